"""Security settings: session lifetimes, password length, allowed redirect origins, and the
two-factor policy (a form of its own, since it is its own service and audit event)."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, url_for
from werkzeug.wrappers import Response

from idp.extensions import db
from idp.models import User
from idp.runtime import runtime
from idp.services import mfa_policy, org_settings
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
    "mfa_policy": "Who must use a second factor",
    "mfa_grace_days": "Grace period (days)",
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
        return _page(acting, error=_readable(exc), typed=changes), 400
    flash("The security settings were saved.", "notice")
    return see_other("admin.settings_page")


@bp.post("/settings/2fa")
@login_required
def update_mfa_policy(user: User) -> tuple[str, int] | Response:
    """An empty grace period keeps the current deadline; a number starts one from today."""
    acting = principal(user)
    typed = {
        "mfa_policy": field("mfa_policy", 16),
        "mfa_grace_days": field("mfa_grace_days", 10, required=False).strip(),
    }
    raw = typed["mfa_grace_days"]
    ctx = credentials_context()
    try:
        if raw and not (raw.isascii() and raw.isdigit()):
            limit = mfa_policy.MAX_GRACE_DAYS
            raise ServiceError(f"mfa_grace_days must be a whole number from 0 to {limit}")
        grace = int(raw) if raw else None
        mfa_policy.set_policy(acting, ctx, typed["mfa_policy"], grace, keep_grace=grace is None)
    except REFUSALS:
        raise
    except ServiceError as exc:
        db.session.rollback()
        return _page(acting, mfa_error=_readable(exc), mfa_typed=typed), 400
    now = mfa_policy.view(acting, ctx.now)
    message = f"The two-factor policy was saved. {mfa_policy.DESCRIPTIONS[now.policy]}"
    if now.policy != "off" and now.grace_until is not None and now.grace_days:
        message += (
            f" Until {now.grace_until:%Y-%m-%d}, members without a second factor may still "
            "sign in without one."
        )
    flash(message, "notice")
    return redirect(url_for("admin.settings_page", _anchor="two-factor"), 303)


def _readable(exc: ServiceError) -> str:
    """The service names settings as the API does; a person reads the form's labels."""
    message = str(exc)
    for name, label in LABELS.items():
        message = message.replace(name, f"“{label}”")
    return sentence(message)


def _page(
    acting: Principal,
    error: str | None = None,
    typed: dict[str, Any] | None = None,
    mfa_error: str | None = None,
    mfa_typed: dict[str, str] | None = None,
) -> str:
    rt = runtime()
    current = org_settings.view(acting, rt.settings)
    shown = dict(current, redirect_origins="\n".join(current["redirect_origins"]))
    return render(
        "settings.html",
        acting,
        values=typed or shown,
        bounds=org_settings.bounds(rt.settings),
        labels=LABELS,
        max_origins=org_settings.MAX_REDIRECT_ORIGINS,
        error=error,
        mfa=mfa_policy.view(acting, rt.clock()),
        mfa_typed=mfa_typed or {},
        mfa_error=mfa_error,
        policies=mfa_policy.POLICIES,
        policy_descriptions=mfa_policy.DESCRIPTIONS,
        max_grace_days=mfa_policy.MAX_GRACE_DAYS,
    )
