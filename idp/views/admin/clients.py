"""Applications (OpenID Connect clients) of the organisation: list, register, edit the name and
registered URIs, reset the secret, delete after a confirmation page.

A new secret is shown once, on the page the form leads to: it waits for that one page view in
the session, sealed (as fresh recovery codes do), so the store never holds it in clear, and
the page that shows it pops it, so a reload or the back button shows it no more.
"""

from __future__ import annotations

import json
import re

from flask import flash, redirect, url_for
from werkzeug.wrappers import Response

from idp.common.sealing import SealingError
from idp.extensions import db
from idp.models import User
from idp.models.oidc import OAuthClient
from idp.runtime import runtime
from idp.services.authz import Principal
from idp.services.errors import ServiceError
from idp.services.oidc import client_admin, clients
from idp.views._context import credentials_context
from idp.views._helpers import CLIENT, field, login_required, server_session
from idp.views.admin._common import REFUSALS, bp, principal, render, see_other, sentence

LIST = "admin.clients_page"
STASH_KEY = "fresh_client_secret"  # sealed {client_id, secret} waiting to be shown once
TYPES = ("confidential", "public")
URI_LISTS = ("redirect_uris", "post_logout_redirect_uris")
# One URI per line, at most MAX_URIS lines of MAX_URI characters (and their line breaks).
MAX_LIST_FIELD = (client_admin.MAX_URI + 2) * client_admin.MAX_URIS
LABELS = {
    "post_logout_redirect_uris": "Sign-out redirect URIs",
    "post_logout_redirect_uri": "Sign-out redirect URI",
    "redirect_uris": "Redirect URIs",
    "redirect_uri": "Redirect URI",
    "backchannel_logout_uri": "Back-channel logout URI",
}
_FIELD_NAMES = re.compile(r"\b(" + "|".join(LABELS) + r")\b")


@bp.get("/clients")
@login_required
def clients_page(user: User) -> str:
    return _list_page(principal(user))


@bp.post("/clients")
@login_required
def create_client(user: User) -> tuple[str, int] | Response:
    acting = principal(user)
    typed = _typed() | {"type": field("type", 20)}
    try:
        if typed["type"] not in TYPES:
            raise ServiceError("Choose whether the application is confidential or public.")
        new = client_admin.NewClient(
            name=typed["name"],
            redirect_uris=_lines(typed["redirect_uris"]),
            post_logout_redirect_uris=_lines(typed["post_logout_redirect_uris"]),
            backchannel_logout_uri=typed["backchannel_logout_uri"].strip() or None,
            public=typed["type"] == "public",
        )
        created = client_admin.create(acting, credentials_context(), new)
    except REFUSALS:
        raise
    except ServiceError as exc:
        db.session.rollback()
        return _list_page(acting, error=_readable(exc), typed=typed), 400
    if created.secret:
        _stash_secret(user, created.client.id, created.secret)
    flash(f"The application {created.client.name} was registered.", "notice")
    return _to_client(created.client.id)


@bp.get(f"/clients/<{CLIENT}:client_id>")
@login_required
def client_page(user: User, client_id: str) -> str:
    acting = principal(user)
    client = client_admin.get_client(acting, client_id)
    return _client_page(acting, client, secret=_pop_secret(user, client.id))


@bp.post(f"/clients/<{CLIENT}:client_id>")
@login_required
def update_client(user: User, client_id: str) -> tuple[str, int] | Response:
    acting = principal(user)
    typed = _typed()
    changes = clients.Changes(
        name=typed["name"],
        redirect_uris=_lines(typed["redirect_uris"]),
        post_logout_redirect_uris=_lines(typed["post_logout_redirect_uris"]),
        backchannel_logout_uri=typed["backchannel_logout_uri"].strip(),  # "" removes it
    )
    try:
        client = client_admin.update(acting, credentials_context(), client_id, changes)
    except REFUSALS:
        raise
    except ServiceError as exc:
        db.session.rollback()
        client = client_admin.get_client(acting, client_id)
        return _client_page(acting, client, error=_readable(exc), typed=typed), 400
    flash(f"The application {client.name} was saved.", "notice")
    return _to_client(client.id)


@bp.post(f"/clients/<{CLIENT}:client_id>/secret")
@login_required
def reset_client_secret(user: User, client_id: str) -> Response:
    acting = principal(user)
    try:
        secret = client_admin.reset_secret(acting, credentials_context(), client_id)
    except REFUSALS:
        raise
    except ServiceError as exc:
        db.session.rollback()
        flash(sentence(exc), "error")
        return _to_client(client_id)
    _stash_secret(user, client_id, secret)
    flash("A new secret was made. The old one no longer works.", "notice")
    return _to_client(client_id)


@bp.get(f"/clients/<{CLIENT}:client_id>/delete")
@login_required
def confirm_delete_client(user: User, client_id: str) -> str:
    """Deletion cannot be undone (the client id and every grant made to it go), so it asks first."""
    acting = principal(user)
    return _client_page(acting, client_admin.get_client(acting, client_id), confirm_delete=True)


@bp.post(f"/clients/<{CLIENT}:client_id>/delete")
@login_required
def delete_client(user: User, client_id: str) -> Response:
    acting = principal(user)
    name = client_admin.get_client(acting, client_id).name
    client_admin.delete(acting, credentials_context(), client_id)
    flash(f"The application {name} was deleted.", "notice")
    return see_other(LIST)


# --- form input ----------------------------------------------------------------------------


def _typed() -> dict[str, str]:
    """What the form holds, as typed (to show it again when refused)."""
    typed = {"name": field("name", client_admin.MAX_NAME * 4)}
    for name in URI_LISTS:
        typed[name] = field(name, MAX_LIST_FIELD, required=False)
    typed["backchannel_logout_uri"] = field(
        "backchannel_logout_uri", client_admin.MAX_URI + 2, required=False
    )
    return typed


def _lines(text: str) -> list[str]:
    """One URI per line; blank lines and the spaces around each are not part of it."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def _readable(exc: ServiceError) -> str:
    """The service names fields as the API does; a person reads the form's labels."""
    return sentence(_FIELD_NAMES.sub(lambda m: f"“{LABELS[m.group(1)]}”", str(exc)))


# --- the secret shown once -----------------------------------------------------------------


def _stash_secret(user: User, client_id: str, secret: str) -> None:
    body = json.dumps({"client_id": client_id, "secret": secret}).encode()
    server_session()[STASH_KEY] = runtime().keyring.seal(body, _purpose(user))


def _pop_secret(user: User, client_id: str) -> str | None:
    sealed = server_session().pop(STASH_KEY, None)
    if not isinstance(sealed, str):
        return None
    try:
        body = json.loads(runtime().keyring.unseal(sealed, _purpose(user)))
    except (SealingError, ValueError):
        return None
    return str(body["secret"]) if body.get("client_id") == client_id else None


def _purpose(user: User) -> str:
    """Binds the sealed secret to the person it was made for."""
    return f"client-secret-display:{user.id}"


# --- pages ---------------------------------------------------------------------------------


def _to_client(client_id: str) -> Response:
    return redirect(url_for("admin.client_page", client_id=client_id), 303)


def _list_page(
    acting: Principal, error: str | None = None, typed: dict[str, str] | None = None
) -> str:
    return render(
        "clients.html",
        acting,
        clients=client_admin.list_clients(acting),
        error=error,
        typed=typed or {"type": "confidential"},
        max_uris=client_admin.MAX_URIS,
        issuer=runtime().settings.issuer,
    )


def _client_page(
    acting: Principal,
    client: OAuthClient,
    *,
    secret: str | None = None,
    error: str | None = None,
    typed: dict[str, str] | None = None,
    confirm_delete: bool = False,
) -> str:
    shown = typed or {
        "name": client.name,
        "redirect_uris": "\n".join(client.redirect_uris),
        "post_logout_redirect_uris": "\n".join(client.post_logout_redirect_uris),
        "backchannel_logout_uri": client.backchannel_logout_uri or "",
    }
    return render(
        "client.html",
        acting,
        client=client,
        secret=secret,
        error=error,
        typed=shown,
        confirm_delete=confirm_delete,
        max_uris=client_admin.MAX_URIS,
        issuer=runtime().settings.issuer,
    )
