"""What several views need: the signed-in user, the request's origin, form field limits."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, cast
from urllib.parse import urlsplit

from flask import Blueprint, abort, g, redirect, request, session, url_for
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter
from werkzeug.wrappers import Response

from idp.common.redirects import MAX_TARGET
from idp.extensions import db
from idp.models import Organisation, User
from idp.runtime import runtime
from idp.services import login_state
from idp.services.audit import Actor, Origin
from idp.services.authz import Principal
from idp.services.oidc import clients
from idp.session_interface import ServerSession


def server_session() -> ServerSession:
    return cast(ServerSession, session._get_current_object())  # type: ignore[attr-defined]


def current_user() -> User | None:
    """The signed-in user, re-read on every request so that disabling takes effect at once."""
    uid = server_session().record.uid
    if uid is None:
        return None
    user = db.session.get(User, uid)
    if user is None or not user.is_active:
        server_session().destroy()
        return None
    return user


def form_targets() -> set[str]:
    """Origins this page's forms may lead to through redirects (Chromium applies the CSP
    ``form-action`` to every hop): where a sign-in in progress returns to afterwards."""
    targets: set[str] = set(g.get("form_targets", ()))
    pending = session.get(login_state.SESSION_KEY) or {}
    try:
        asked = request.values.get("next")
    except HTTPException:  # the body itself was refused (too large): this is its error page
        asked = request.args.get("next")
    for next_url in (asked, pending.get("next_url")):
        if next_url:
            origin = clients.form_target(str(next_url)[:MAX_TARGET], runtime().settings.issuer)
            if origin:
                targets.add(origin)
    return targets


def allow_form_target(url: str) -> None:
    """Let this page's forms end at ``url``'s origin (e.g. the consent form's redirect URI)."""
    parts = urlsplit(url)
    g.form_targets = {*g.get("form_targets", ()), f"{parts.scheme}://{parts.netloc}"}


def principal_for(user: User) -> Principal | None:
    """The signed-in user acting in the session's active organisation (None without one)."""
    org_id = server_session().record.org_id
    org = db.session.get(Organisation, org_id) if org_id else None
    return Principal(user, org, "session") if org is not None else None


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Pass the signed-in user to the view as ``user``, or send the browser to sign in."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        user = current_user()
        if user is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, user=user, **kwargs)

    return wrapper


def origin() -> Origin:
    return Origin(ip=request.remote_addr, user_agent=request.user_agent.string[:512] or None)


def actor(user: User) -> Actor:
    return Actor(user.id, user.email)


def field(name: str, max_length: int, required: bool = True) -> str:
    """A form field, refused with a 400 when missing (if required) or absurdly long."""
    value = request.form.get(name, "")
    if len(value) > max_length:
        abort(400, description=f"The field {name!r} is too long.")
    if required and not value:
        abort(400, description=f"The field {name!r} is required.")
    return value


def redirect_to(endpoint: str, **values: Any) -> Response:
    return redirect(url_for(endpoint, **values))


class ClientIdConverter(BaseConverter):
    """An OIDC ``client_id`` in a path: only the characters client ids are made of, at most 64.
    Anything else is a plain 404 that never reaches a query (PostgreSQL refuses a NUL)."""

    regex = r"[A-Za-z0-9_-]{1,64}"


CLIENT = "client"  # the converter's name in routes: <client:client_id>


def use_client_ids(bp: Blueprint) -> None:
    """Let ``bp``'s routes take ``<client:client_id>``; call it before adding them, since a rule is
    compiled (and its converter looked up) when the blueprint is registered."""

    def add(state: BlueprintSetupState) -> None:
        state.app.url_map.converters.setdefault(CLIENT, ClientIdConverter)

    bp.record_once(add)
