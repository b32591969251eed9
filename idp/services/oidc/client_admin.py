"""OpenID Connect clients as an organisation's admins manage them, from the console and the API.

Each call checks ``security.manage`` in the principal's organisation (``authz``) and acts only
on that organisation's clients: another organisation's client, and the instance's own (the
gateway, whose ``org_id`` is None), is ``NotFound`` with the same words as an unknown id, so
no one can learn which ids exist elsewhere.

What an organisation admin may register is narrower than what the operator may (``bascule
clients create``), because a tenant's admin is not trusted with the whole instance:

- **Third-party only.** A first-party client skips the consent page and may introspect any
  token the instance issued (the gateway needs that); an organisation admin who could set it
  would get silent sign-ins into their app and a window onto every other organisation's tokens.
  The console and API offer no ``first_party``; only the operator's CLI does.
- **Authorization code (+ refresh) only**, confidential (``client_secret_basic``) or public
  (``none``, PKCE). Client credentials, ``private_key_jwt`` and ES256 ID tokens are for the CLI.
- **The back-channel logout URI is called by the IdP itself**, from inside the operator's
  network: outside development mode it may not name a loopback, private, link-local or other
  non-public address, so an organisation admin cannot aim the IdP's requests at internal
  services (server-side request forgery). A host *name* that resolves to such an address can
  only be caught when the request is sent.

Every change goes through ``clients``, which writes the audit event with the actor, origin and
organisation; the input is checked before anything is written.
"""

from __future__ import annotations

import ipaddress
import socket
import unicodedata
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy import select

from idp.common.permissions import SECURITY_MANAGE
from idp.config import Settings
from idp.extensions import db
from idp.models.oidc import OAuthClient
from idp.services import authz
from idp.services.authz import Principal
from idp.services.credentials import Context
from idp.services.errors import NotFound, ServiceError
from idp.services.oidc import clients

MAX_NAME = 100
MAX_URI = 2000  # the back-channel column's width; the same for every URI, for one rule
MAX_URIS = clients.MAX_URIS


@dataclass(frozen=True)
class NewClient:
    """A client as an organisation admin registers it (always third-party)."""

    name: str
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    backchannel_logout_uri: str | None = None
    public: bool = False


def list_clients(principal: Principal) -> list[OAuthClient]:
    authz.require(principal, SECURITY_MANAGE)
    query = (
        select(OAuthClient)
        .where(OAuthClient.org_id == principal.org.id)
        .order_by(OAuthClient.name, OAuthClient.id)
    )
    return list(db.session.scalars(query))


def get_client(principal: Principal, client_id: str) -> OAuthClient:
    """The organisation's client; anything else (unknown, elsewhere, the gateway) is NotFound."""
    authz.require(principal, SECURITY_MANAGE)
    client = clients.get(client_id)
    if client is None or client.org_id is None or client.org_id != principal.org.id:
        raise NotFound(f"No client {client_id[:64]!r} in {principal.org.slug!r}.")
    return client


def create(principal: Principal, ctx: Context, new: NewClient) -> clients.Created:
    """Register a third-party client of the principal's organisation; a confidential one's
    secret is in the result, once."""
    authz.require(principal, SECURITY_MANAGE)
    _check_name(new.name)
    _check_uris(new.redirect_uris, "redirect_uris")
    _check_uris(new.post_logout_redirect_uris, "post_logout_redirect_uris")
    if new.backchannel_logout_uri:
        _check_backchannel(new.backchannel_logout_uri, ctx.settings)
    return clients.create_client(
        new.name,
        new.redirect_uris,
        public=new.public,
        first_party=False,
        post_logout_redirect_uris=new.post_logout_redirect_uris,
        backchannel_logout_uri=new.backchannel_logout_uri or None,
        org_id=principal.org.id,
        actor=principal.actor,
        origin=ctx.origin,
        now=ctx.now,
    )


def update(
    principal: Principal, ctx: Context, client_id: str, changes: clients.Changes
) -> OAuthClient:
    """Rename a client or replace its registered URIs (each list whole)."""
    client = get_client(principal, client_id)
    if changes.name is not None:
        _check_name(changes.name)
    if changes.redirect_uris is not None:
        _check_uris(changes.redirect_uris, "redirect_uris")
    if changes.post_logout_redirect_uris is not None:
        _check_uris(changes.post_logout_redirect_uris, "post_logout_redirect_uris")
    if changes.backchannel_logout_uri:
        _check_backchannel(changes.backchannel_logout_uri, ctx.settings)
    return clients.update(client, changes, actor=principal.actor, origin=ctx.origin, now=ctx.now)


def reset_secret(principal: Principal, ctx: Context, client_id: str) -> str:
    """A new secret for a confidential client, returned once; the old one stops working now."""
    client = get_client(principal, client_id)
    return clients.new_secret(client, actor=principal.actor, origin=ctx.origin, now=ctx.now)


def delete(principal: Principal, ctx: Context, client_id: str) -> None:
    """Delete the client and everything issued to it (codes, grants, refresh tokens, consents)."""
    client = get_client(principal, client_id)
    clients.delete(client, actor=principal.actor, origin=ctx.origin, now=ctx.now)


# --- input rules beyond those ``clients`` applies to everyone ---------------------------------


def _check_name(name: str) -> None:
    if len(name) > MAX_NAME:
        raise ServiceError(f"The name must be at most {MAX_NAME} characters long.")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise ServiceError("The name must not contain control characters.")


def _check_uris(uris: list[str], what: str) -> None:
    """A URI is matched exactly, character for character: refuse what no browser would send
    back as typed (spaces, control characters), and what the database could not store."""
    if len(uris) > MAX_URIS:
        raise ServiceError(f"At most {MAX_URIS} {what} may be registered.")
    for uri in uris:
        if len(uri) > MAX_URI:
            raise ServiceError(f"Each of {what} must be at most {MAX_URI} characters long.")
        if any(c.isspace() or unicodedata.category(c) == "Cc" for c in uri):
            raise ServiceError(f"{what} must not contain spaces or control characters: {uri!r}")


def _check_backchannel(uri: str, settings: Settings) -> None:
    _check_uris([uri], "backchannel_logout_uri")
    if settings.is_dev:
        return  # a local trial runs every application on this machine
    try:
        host = (urlsplit(uri).hostname or "").rstrip(".")
    except ValueError:
        return  # not a URL at all: ``clients`` refuses it with its own message
    if host == "localhost" or host.endswith(".localhost") or _internal_address(host):
        raise ServiceError(
            "backchannel_logout_uri must be a public address: Bascule itself calls it, and "
            f"may not be sent to loopback, private or link-local addresses: {uri}"
        )


def _internal_address(host: str) -> bool:
    """Whether ``host`` is an IP address outside the public internet, in any spelling the
    resolver accepts (``127.1``, ``2130706433`` and ``0x7f.0.0.1`` are all 127.0.0.1)."""
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return False  # a host name: only the request's sender can see where it leads
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global
