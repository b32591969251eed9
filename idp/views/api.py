"""The JSON admin API under /api/v1: the admin console's operations for programs.

Callers authenticate with ``Authorization: Bearer <personal API token>`` and nothing else:
a session cookie counts for nothing here, so a page on another site cannot ride a signed-in
browser into the API (which is also why CSRF does not apply). Views parse and check the
input's shape, call the same services as the console and CLI (which decide every
permission and write the audit log), and answer JSON; errors are RFC 9457 problem documents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.routing import BaseConverter

from idp.extensions import csrf, db
from idp.models import ApiToken, AuditEvent, Membership, Role
from idp.runtime import runtime
from idp.services import (
    api_tokens,
    audit,
    audit_query,
    authz,
    members,
    mfa,
    mfa_policy,
    org_settings,
    roles,
)
from idp.services.authz import Forbidden, Principal
from idp.services.errors import NotFound
from idp.services.oidc import client_admin, clients
from idp.views import api_input as inp
from idp.views._context import credentials_context
from idp.views._helpers import CLIENT, origin, use_client_ids
from idp.views.api_spec import openapi_document
from idp.web import error_response

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)


class IdConverter(BaseConverter):
    """A row id in a path: at most nine digits, so a longer one is a plain 404 rather than a
    32-bit overflow in the database (werkzeug's own ``int(max=…)`` answers 405 instead)."""

    regex = r"[0-9]{1,9}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: Any) -> str:
        return str(int(value))


# Registered before the routes below are added, which is when their rules are compiled.
bp.record_once(lambda state: state.app.url_map.converters.setdefault("id", IdConverter))
ID = "id"
use_client_ids(bp)


# --- authentication and errors ------------------------------------------------------------


def token_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Pass the token's principal to the view as ``principal``, or answer 401.

    A refusal (403) is recorded in the audit log with who tried what, since a token
    probing for permissions it lacks is worth an admin's attention.
    """

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        secret = inp.bearer_token()
        principal = api_tokens.authenticate(secret) if secret else None
        if principal is None:
            return _unauthorized(secret is not None)
        try:
            assert principal.user is not None
            if authz.membership_of(principal.user, principal.org) is None:
                # The person has left the organisation since the token was made.
                raise Forbidden(f"You are no longer a member of {principal.org.slug!r}.")
            return view(*args, principal=principal, **kwargs)
        except Forbidden as exc:
            _record_denial(principal, exc)
            raise

    return wrapper


def _unauthorized(presented: bool) -> tuple[Response | str, int]:
    message = (
        "The API token is not valid: it may have been revoked, or its user disabled."
        if presented
        else "Send a personal API token as 'Authorization: Bearer <token>'."
    )
    body, status = error_response(401, message)
    challenge = 'Bearer realm="bascule"' + (', error="invalid_token"' if presented else "")
    body.headers["WWW-Authenticate"] = challenge  # type: ignore[union-attr]
    return body, status


def _record_denial(principal: Principal, error: Forbidden) -> None:
    db.session.rollback()  # nothing half-done by the refused operation may be committed
    audit.record(
        "api.denied",
        outcome="failure",
        actor=principal.actor,
        org_id=principal.org.id,
        target=f"{request.method} {request.path}"[:254],
        origin=origin(),
        details={"reason": str(error)[:300]},
        now=runtime().clock(),
    )


@contextmanager
def body_reference() -> Iterator[None]:
    """A name in the body that does not exist (a role) is a bad request, not a missing page."""
    try:
        yield
    except NotFound as exc:
        inp.bad(str(exc))


@bp.after_request
def no_store(response: Response) -> Response:
    """Answers may hold a token or an invitation link: no cache may keep them."""
    response.headers["Cache-Control"] = "no-store"
    return response


# --- the document and the caller ------------------------------------------------------------


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document(runtime().settings))


@bp.get("/me")
@token_required
def me(principal: Principal) -> Response:
    assert principal.user is not None
    member = authz.membership_of(principal.user, principal.org)
    assert member is not None
    return jsonify(
        user={"id": principal.user.id, "email": principal.user.email, "name": principal.user.name},
        org={"id": principal.org.id, "slug": principal.org.slug, "name": principal.org.name},
        role=member.role.name,
        permissions=sorted(authz.permissions_of(principal)),
    )


# --- members --------------------------------------------------------------------------------


@bp.get("/members")
@token_required
def list_members(principal: Principal) -> Response:
    page, per_page = inp.page_args(inp.query({"page", "per_page"}))
    result = members.list_members(principal, page, per_page)
    return _listing([_member(m) for m in result.items], result.total, page, per_page)


@bp.post("/members")
@token_required
def invite_member(principal: Principal) -> tuple[Response, int]:
    body = inp.json_body({"email", "role", "name"}, required={"email"})
    email = inp.text(body["email"], "email", 254, min_length=1)
    role = inp.text(body.get("role", "member"), "role", 63, min_length=1)
    name = inp.text(body.get("name", ""), "name", 200)
    with body_reference():
        member, link = members.invite(principal, credentials_context(), email, role, name)
    db.session.commit()
    return jsonify(member=_member(member), invitation_link=link), 201


@bp.get(f"/members/<{ID}:member_id>")
@token_required
def get_member(principal: Principal, member_id: int) -> Response:
    return jsonify(_member(members.get_member(principal, member_id)))


@bp.patch(f"/members/<{ID}:member_id>")
@token_required
def update_member(principal: Principal, member_id: int) -> Response:
    """Change the role, then enable or disable the account. Each change is made and audited
    by its own service call, so when the second is refused the first stays made."""
    body = inp.json_body({"role", "active"})
    if not body:
        inp.bad("Give at least one of: role, active.")
    role = inp.text(body["role"], "role", 63, min_length=1) if "role" in body else None
    active = inp.boolean(body["active"], "active") if "active" in body else None
    ctx = credentials_context()
    member = members.get_member(principal, member_id)
    if role is not None and role != member.role.name:
        with body_reference():
            members.change_role(principal, ctx, member_id, role)
    if active is not None and active != member.user.is_active:
        members.set_active(principal, ctx, member_id, active)
    db.session.commit()
    return jsonify(_member(members.get_member(principal, member_id)))


@bp.delete(f"/members/<{ID}:member_id>")
@token_required
def remove_member(principal: Principal, member_id: int) -> tuple[str, int]:
    members.remove(principal, credentials_context(), member_id)
    db.session.commit()
    return "", 204


@bp.post(f"/members/<{ID}:member_id>/invitation")
@token_required
def resend_invitation(principal: Principal, member_id: int) -> Response:
    link = members.resend_invitation(principal, credentials_context(), member_id)
    db.session.commit()
    return jsonify(invitation_link=link)


@bp.post(f"/members/<{ID}:member_id>/sessions/revoke")
@token_required
def revoke_member_sessions(principal: Principal, member_id: int) -> Response:
    ended = members.revoke_sessions(principal, credentials_context(), member_id)
    db.session.commit()
    return jsonify(sessions_revoked=ended)


@bp.post(f"/members/<{ID}:member_id>/factors/reset")
@token_required
def reset_member_factors(principal: Principal, member_id: int) -> Response:
    """Clear the member's authenticator app, security keys and recovery codes."""
    removed = mfa.reset_factors(principal, credentials_context(), member_id)
    db.session.commit()
    return jsonify(removed)


# --- roles ----------------------------------------------------------------------------------

MAX_PERMISSIONS = 50


@bp.get("/roles")
@token_required
def list_roles(principal: Principal) -> Response:
    page, per_page = inp.page_args(inp.query({"page", "per_page"}))
    found = roles.list_roles(principal)
    return _paged([_role(r) for r in found], page, per_page)


@bp.post("/roles")
@token_required
def create_role(principal: Principal) -> tuple[Response, int]:
    body = inp.json_body({"name", "permissions"}, required={"name"})
    name = inp.text(body["name"], "name", 63, min_length=1)
    granted = inp.text_list(body.get("permissions", []), "permissions", MAX_PERMISSIONS, 63)
    role = roles.create(principal, credentials_context(), name, frozenset(granted))
    db.session.commit()
    return jsonify(_role(role)), 201


@bp.get(f"/roles/<{ID}:role_id>")
@token_required
def get_role(principal: Principal, role_id: int) -> Response:
    return jsonify(_role(roles.get_role(principal, role_id)))


@bp.patch(f"/roles/<{ID}:role_id>")
@token_required
def update_role(principal: Principal, role_id: int) -> Response:
    body = inp.json_body({"permissions"}, required={"permissions"})
    granted = inp.text_list(body["permissions"], "permissions", MAX_PERMISSIONS, 63)
    role = roles.set_permissions(principal, credentials_context(), role_id, frozenset(granted))
    db.session.commit()
    return jsonify(_role(role))


@bp.delete(f"/roles/<{ID}:role_id>")
@token_required
def delete_role(principal: Principal, role_id: int) -> tuple[str, int]:
    roles.delete(principal, credentials_context(), role_id)
    db.session.commit()
    return "", 204


# --- security settings ----------------------------------------------------------------------

NUMERIC_SETTINGS = ("session_idle_minutes", "session_max_hours", "password_min_length")
MFA_SETTINGS = ("mfa_policy", "mfa_grace_days")


@bp.get("/settings")
@token_required
def get_settings(principal: Principal) -> Response:
    rt = runtime()
    return jsonify(org_settings.view(principal, rt.settings) | _mfa(principal, rt.clock()))


@bp.patch("/settings")
@token_required
def update_settings(principal: Principal) -> Response:
    """The session and password settings, then the 2FA policy. The policy is checked before
    either is written, so a refusal of any field changes nothing. Without ``mfa_grace_days``
    the grace period's deadline stays as it is; with it, a new one starts today."""
    body = inp.json_body({*NUMERIC_SETTINGS, "redirect_origins", *MFA_SETTINGS})
    changes: dict[str, Any] = {n: inp.integer(body[n], n) for n in NUMERIC_SETTINGS if n in body}
    if "redirect_origins" in body:
        changes["redirect_origins"] = inp.text_list(
            body["redirect_origins"], "redirect_origins", org_settings.MAX_REDIRECT_ORIGINS, 300
        )
    ctx = credentials_context()
    policy = inp.text(body["mfa_policy"], "mfa_policy", 16) if "mfa_policy" in body else None
    grace = (
        inp.integer(body["mfa_grace_days"], "mfa_grace_days") if "mfa_grace_days" in body else None
    )
    if policy is not None or grace is not None:
        current = mfa_policy.view(principal, ctx.now)  # a 403 before any 400 about the values
        policy = current.policy if policy is None else policy  # a grace period alone
        mfa_policy.check(policy, grace)
    after = org_settings.update(principal, ctx, changes)
    if policy is not None:
        mfa_policy.set_policy(principal, ctx, policy, grace, keep_grace=grace is None)
    db.session.commit()
    return jsonify(after | _mfa(principal, ctx.now))


def _mfa(principal: Principal, now: float) -> dict[str, Any]:
    current = mfa_policy.view(principal, now)
    return {
        "mfa_policy": current.policy,
        "mfa_grace_days": current.grace_days,
        "mfa_grace_until": _time(current.grace_until) if current.grace_days else None,
    }


# --- audit log ------------------------------------------------------------------------------


@bp.get("/audit")
@token_required
def audit_log(principal: Principal) -> Response:
    params = inp.query({"actor", "event", "since", "until", "q", "page", "per_page"})
    page, per_page = inp.page_args(params)
    result = audit_query.search(
        principal,
        actor=inp.query_text(params, "actor", 254),
        event=inp.query_text(params, "event", 63),
        since=inp.query_time(params, "since"),
        until=inp.query_time(params, "until"),
        text=inp.query_text(params, "q", 200),
        page=page,
        per_page=per_page,
    )
    return _listing([_event(e) for e in result.items], result.total, page, per_page)


# --- API tokens -----------------------------------------------------------------------------


@bp.get("/tokens")
@token_required
def list_tokens(principal: Principal) -> Response:
    page, per_page = inp.page_args(inp.query({"page", "per_page"}))
    return _paged([_token(t) for t in api_tokens.list_tokens(principal)], page, per_page)


@bp.post("/tokens")
@token_required
def create_token(principal: Principal) -> tuple[Response, int]:
    """A new token for the caller (tokens for others are made by the operator's CLI)."""
    body = inp.json_body({"name"})
    name = inp.text(body.get("name", ""), "name", 100)
    assert principal.user is not None
    issued = api_tokens.create(principal, credentials_context(), principal.user, name)
    db.session.commit()
    return jsonify(_token(issued.token) | {"token": issued.secret}), 201


@bp.delete(f"/tokens/<{ID}:token_id>")
@token_required
def revoke_token(principal: Principal, token_id: int) -> tuple[str, int]:
    api_tokens.revoke(principal, credentials_context(), token_id)
    db.session.commit()
    return "", 204


# --- OpenID Connect clients -----------------------------------------------------------------

CLIENT_FIELDS = {"name", "redirect_uris", "post_logout_redirect_uris", "backchannel_logout_uri"}


@bp.get("/clients")
@token_required
def list_clients(principal: Principal) -> Response:
    page, per_page = inp.page_args(inp.query({"page", "per_page"}))
    found = client_admin.list_clients(principal)
    return _paged([clients.describe(c) for c in found], page, per_page)


@bp.post("/clients")
@token_required
def create_client(principal: Principal) -> tuple[Response, int]:
    """Register a third-party client of the organisation (see client_admin: no first_party)."""
    body = inp.json_body(
        CLIENT_FIELDS | {"public", "first_party"}, required={"name", "redirect_uris"}
    )
    if "first_party" in body:
        inp.bad(
            "Only the operator can register a first-party client (one that skips consent): "
            "bascule clients create --first-party."
        )
    new = client_admin.NewClient(
        name=inp.text(body["name"], "name", client_admin.MAX_NAME, min_length=1),
        redirect_uris=_uris(body, "redirect_uris"),
        post_logout_redirect_uris=_uris(body, "post_logout_redirect_uris"),
        backchannel_logout_uri=_backchannel(body) or None,
        public=inp.boolean(body.get("public", False), "public"),
    )
    created = client_admin.create(principal, credentials_context(), new)
    db.session.commit()
    return jsonify(clients.describe(created.client) | {"client_secret": created.secret}), 201


@bp.get(f"/clients/<{CLIENT}:client_id>")
@token_required
def get_client(principal: Principal, client_id: str) -> Response:
    return jsonify(clients.describe(client_admin.get_client(principal, client_id)))


@bp.patch(f"/clients/<{CLIENT}:client_id>")
@token_required
def update_client(principal: Principal, client_id: str) -> Response:
    """Rename, or replace a list of URIs whole; ``backchannel_logout_uri`` null removes it."""
    body = inp.json_body(CLIENT_FIELDS)
    if not body:
        inp.bad(f"Give at least one of: {', '.join(sorted(CLIENT_FIELDS))}.")
    changes = clients.Changes(
        name=(
            inp.text(body["name"], "name", client_admin.MAX_NAME, min_length=1)
            if "name" in body
            else None
        ),
        redirect_uris=_uris(body, "redirect_uris") if "redirect_uris" in body else None,
        post_logout_redirect_uris=(
            _uris(body, "post_logout_redirect_uris")
            if "post_logout_redirect_uris" in body
            else None
        ),
        backchannel_logout_uri=_backchannel(body) if "backchannel_logout_uri" in body else None,
    )
    client = client_admin.update(principal, credentials_context(), client_id, changes)
    db.session.commit()
    return jsonify(clients.describe(client))


@bp.delete(f"/clients/<{CLIENT}:client_id>")
@token_required
def delete_client(principal: Principal, client_id: str) -> tuple[str, int]:
    client_admin.delete(principal, credentials_context(), client_id)
    db.session.commit()
    return "", 204


@bp.post(f"/clients/<{CLIENT}:client_id>/secret")
@token_required
def reset_client_secret(principal: Principal, client_id: str) -> Response:
    """A new secret, answered once; the old one stops working at once."""
    secret = client_admin.reset_secret(principal, credentials_context(), client_id)
    db.session.commit()
    return jsonify(client_id=client_id, client_secret=secret)


def _uris(body: dict[str, Any], name: str) -> list[str]:
    return inp.text_list(body.get(name, []), name, client_admin.MAX_URIS, client_admin.MAX_URI)


def _backchannel(body: dict[str, Any]) -> str:
    """The back-channel URI, or "" for none (null or an empty string)."""
    value = body.get("backchannel_logout_uri")
    return "" if value is None else inp.text(value, "backchannel_logout_uri", client_admin.MAX_URI)


# --- representations ------------------------------------------------------------------------


def _listing(items: list[dict[str, Any]], total: int, page: int, per_page: int) -> Response:
    return jsonify(items=items, total=total, page=page, per_page=per_page)


def _paged(items: Sequence[dict[str, Any]], page: int, per_page: int) -> Response:
    """Paginate a short list (roles, tokens) that the service returns whole."""
    start = (page - 1) * per_page
    return _listing(list(items[start : start + per_page]), len(items), page, per_page)


def _time(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else None


def _member(member: Membership) -> dict[str, Any]:
    user = member.user
    return {
        "id": member.id,
        "user_id": user.id,
        "email": user.email,
        "name": user.name,
        "role": member.role.name,
        "active": user.is_active,
        "has_password": user.password_hash is not None,
        "joined_at": _time(member.created_at),
    }


def _role(role: Role) -> dict[str, Any]:
    return {
        "id": role.id,
        "name": role.name,
        "builtin": role.builtin,
        "permissions": sorted(role.permissions),
        "members": roles.members_holding(role),
    }


def _token(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "user_id": token.user_id,
        "email": token.user.email,
        "hint": token.hint,
        "created_at": _time(token.created_at),
        "last_used_at": _time(token.last_used_at),
        "revoked_at": _time(token.revoked_at),
    }


def _event(event: AuditEvent) -> dict[str, Any]:
    return audit.as_dict(event) | {"hash": event.hash}


# The SAML connection endpoints live in their own module and add their routes to ``bp``
# (imported last: that module imports this one's blueprint and helpers).
from idp.views import api_saml  # noqa: E402, F401
