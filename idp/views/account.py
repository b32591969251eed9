"""The signed-in user's own security page: profile, password, sessions."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from werkzeug.wrappers import Response

from idp.common import permissions
from idp.models import User
from idp.runtime import runtime
from idp.services import active_org, audit, credentials, passwords, sessions, users
from idp.services.errors import ServiceError
from idp.services.oidc import consent
from idp.services.oidc.claims import SCOPE_TEXT
from idp.views._context import credentials_context
from idp.views._helpers import actor, field, login_required, origin, redirect_to, server_session
from idp.views._mfa import org_limits, reauth_needed

bp = Blueprint("account", __name__, url_prefix="/account")


@bp.get("")
@login_required
def overview(user: User) -> str:
    return _overview_page(user)


@bp.post("/password")
@login_required
def change_password(user: User) -> tuple[str, int] | Response:
    if (reauth := reauth_needed("/account")) is not None:  # a sign-in in the last 10 minutes
        return reauth
    current = field("current_password", passwords.MAX_LENGTH + 1)
    new = field("new_password", passwords.MAX_LENGTH + 1)
    confirm = field("new_password_confirm", passwords.MAX_LENGTH + 1)
    if new != confirm:
        return _overview_page(user, error="The two new passwords are not the same."), 400
    session = server_session()
    try:
        credentials.change_password(credentials_context(), user, current, new, session.sid)
    except users.PasswordRejected as exc:
        v = exc.violation
        return _overview_page(user, error=v.reason, tips=v.suggestions), 400
    except credentials.TooManyAttempts as exc:
        page = _overview_page(user, error=str(exc))
        return Response(page, 429, {"Retry-After": str(exc.retry_after)})
    except ServiceError as exc:
        return _overview_page(user, error=str(exc)), 400
    session.rotate()  # a privilege change: the old cookie value must not survive it
    return redirect_to("account.overview", changed=1)


@bp.post("/org")
@login_required
def switch_org(user: User) -> Response:
    """Act in another of one's organisations: checked, audited, and a new session id."""
    session = server_session()
    org = active_org.switch(
        user,
        field("org", 36),
        current=session.record.org_id,
        origin=origin(),
        now=runtime().clock(),
    )
    session.record.org_id = org.id
    session.apply_limits(org_limits(org.id))  # the new organisation's session limits hold now
    session.rotate()  # a privilege change: the old cookie value must not survive it
    return redirect_to("account.overview", switched=1)


@bp.get("/sessions")
@login_required
def list_sessions(user: User) -> str:
    rt = runtime()
    return render_template(
        "idp/sessions.html",
        user=user,
        sessions=sessions.list_for_user(rt.store, user.id, rt.clock(), rt.session_limits),
        current=server_session().sid,
    )


@bp.post("/sessions/<sid>/revoke")
@login_required
def revoke_session(user: User, sid: str) -> Response:
    rt = runtime()
    if not sessions.revoke(rt.store, user.id, sid[:64]):
        abort(404, description="That session has already ended.")
    audit.record(
        "session.revoke", actor=actor(user), target=sid[:64], origin=origin(), now=rt.clock()
    )
    if sid == server_session().sid:
        server_session().destroy()
        return redirect_to("auth.login")
    return redirect_to("account.list_sessions")


@bp.post("/sessions/revoke-others")
@login_required
def revoke_other_sessions(user: User) -> Response:
    rt = runtime()
    ended = sessions.revoke_all(rt.store, user.id, keep=server_session().sid)
    audit.record(
        "session.revoke_others",
        actor=actor(user),
        origin=origin(),
        now=rt.clock(),
        details={"count": ended},
    )
    return redirect_to("account.list_sessions")


@bp.get("/apps")
@login_required
def list_apps(user: User) -> str:
    """Applications the user allowed to sign them in, and what each may see."""
    return render_template(
        "idp/apps.html", user=user, given=consent.given_by(user), scope_text=SCOPE_TEXT
    )


@bp.post("/apps/<client_id>/revoke")
@login_required
def revoke_app(user: User, client_id: str) -> Response:
    consent.revoke(user, client_id[:64], origin())
    return redirect_to("account.list_apps")


def _overview_page(user: User, error: str | None = None, tips: list[str] | None = None) -> str:
    active = server_session().record.org_id
    return render_template(
        "idp/account.html",
        user=user,
        memberships=active_org.memberships(user),
        active_org=active,
        # Read again on every request, so a role change shows on the member's next page.
        held=sorted(active_org.held_in(user, active)),
        descriptions=permissions.DESCRIPTIONS,
        min_length=runtime().settings.password_min_length,
        changed=request.args.get("changed") == "1",
        switched=request.args.get("switched") == "1",
        error=error,
        tips=tips or [],
    )
