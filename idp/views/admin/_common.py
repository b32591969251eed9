"""The admin console's blueprint and what all its pages share.

Every page acts as the signed-in user in the session's active organisation (``principal``)
and calls a service, which checks the permission (``authz``) and writes the audit event. A
missing permission comes back from the service as ``Forbidden``: the 403 page. What the pages
hide (links, buttons) is for clarity only, never the protection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from idp.common.permissions import DESCRIPTIONS
from idp.extensions import db
from idp.models import User
from idp.services import admin_overview
from idp.services.authz import Forbidden, Principal
from idp.services.errors import NotFound, ServiceError
from idp.views._helpers import principal_for, use_client_ids

bp = Blueprint("admin", __name__, url_prefix="/admin")
use_client_ids(bp)

# A service's refusal that the page explains in place; Forbidden and NotFound are not caught
# here, so they stay the 403 and 404 pages.
REFUSALS = (Forbidden, NotFound)


def principal(user: User) -> Principal:
    found = principal_for(user)
    if found is None:
        abort(403, description="You are not acting in any organisation.")
    return found


def render(template: str, acting: Principal, **context: Any) -> str:
    """An admin page, with the sections this person may open in its navigation."""
    return render_template(
        f"idp/admin/{template}",
        user=acting.user,
        org=acting.org,
        sections=admin_overview.administrative_permissions(acting),
        descriptions=DESCRIPTIONS,
        **context,
    )


def one_click(action: Callable[[], object], done: str, endpoint: str) -> Response:
    """Run a one-button action (PRG); a rule's refusal goes back to the list, explained."""
    try:
        action()
    except REFUSALS:
        raise
    except ServiceError as exc:
        return refused(exc, endpoint)
    flash(done, "notice")
    return see_other(endpoint)


def refused(exc: ServiceError, endpoint: str) -> Response:
    db.session.rollback()
    flash(sentence(exc), "error")
    return see_other(endpoint)


def sentence(message: object) -> str:
    """A service's message as a sentence on a page: capital first, full stop last."""
    text = str(message).strip()
    if "@" not in text.partition(" ")[0]:  # "jane@acme.test is …" keeps its address as typed
        text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def page_number() -> int:
    raw = request.args.get("page", "1")
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < len(raw) <= 6 else 1


def see_other(endpoint: str) -> Response:
    """After a form, the page to GET (303: a reload does not send the form again)."""
    return redirect(url_for(endpoint), 303)
