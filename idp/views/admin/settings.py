"""Security settings: session lifetimes, password length, allowed redirect origins."""

from __future__ import annotations

from typing import Any

from flask import flash
from werkzeug.wrappers import Response

from idp.extensions import db
from idp.models import User
from idp.runtime import runtime
from idp.services import org_settings
from idp.services.authz import Principal
from idp.services.errors import ServiceError
from idp.views._context import credentials_context
from idp.views._helpers import field, login_required
from idp.views.admin._common import REFUSALS, bp, principal, render, see_other, sentence

NUMBERS = ("session_idle_minutes", "session_max_hours", "password_min_length")
LABELS = {
    "session_idle_minutes": "Sign out after inactivity (minutes)",
    "session_max_hours": "Longest session (hours)",
    "password_min_length": "Shortest password (characters)",
    "redirect_origins": "Allowed redirect origins",
}


@bp.get("/settings")
@login_required
def settings_page(user: User) -> str:
    return _page(principal(user))


@bp.post("/settings")
@login_required
def update_settings(user: User) -> tuple[str, int] | Response:
    acting = principal(user)
    changes: dict[str, Any] = {name: field(name, 10) for name in NUMBERS}
    changes["redirect_origins"] = field("redirect_origins", 20_000, required=False)
    try:
        org_settings.update(acting, credentials_context(), changes)
    except REFUSALS:
        raise
    except ServiceError as exc:
        db.session.rollback()
        # The service names settings as the API does; a person reads the form's labels.
        message = str(exc)
        for name, label in LABELS.items():
            message = message.replace(name, f"“{label}”")
        return _page(acting, error=sentence(message), typed=changes), 400
    flash("The security settings were saved.", "notice")
    return see_other("admin.settings_page")


def _page(acting: Principal, error: str | None = None, typed: dict[str, Any] | None = None) -> str:
    settings = runtime().settings
    current = org_settings.view(acting, settings)
    shown = dict(current, redirect_origins="\n".join(current["redirect_origins"]))
    return render(
        "settings.html",
        acting,
        values=typed or shown,
        bounds=org_settings.bounds(settings),
        labels=LABELS,
        max_origins=org_settings.MAX_REDIRECT_ORIGINS,
        error=error,
    )
