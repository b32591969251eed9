"""Registered relying parties: created, listed, authenticated, deleted; every change audited.

A client secret has 256 random bits, so a keyed SHA-256 (HMAC) protects it as well as a slow
hash would, at a cost the token endpoint can afford on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select

from idp.extensions import db
from idp.models.oidc import OAuthClient
from idp.runtime import runtime
from idp.services import audit
from idp.services.audit import Actor, Origin
from idp.services.errors import NotFound, ServiceError

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
MAX_URIS = 20
MAX_URI_LENGTH = 2000  # the width of the columns that keep them


@dataclass(frozen=True)
class Created:
    client: OAuthClient
    secret: str | None  # shown once; None for public and private_key_jwt clients


def secret_digest(secret: str) -> str:
    key = runtime().keyring.derive("bascule client secret hash")
    return hmac.new(key, secret.encode("utf-8", "replace"), hashlib.sha256).hexdigest()


def check_secret(client: OAuthClient, secret: str | None) -> bool:
    """Constant-time; False for public clients and for anything over a sane length."""
    if client.secret_hash is None or not secret or len(secret) > 200:
        return False
    return hmac.compare_digest(client.secret_hash, secret_digest(secret))


def _check_uri(uri: str, allow_http: bool, what: str) -> str:
    """Registered URIs are matched exactly later, so refuse now what could never be safe."""
    if len(uri) > MAX_URI_LENGTH:
        raise ServiceError(f"{what} must be at most {MAX_URI_LENGTH} characters long.")
    try:
        parts = urlsplit(uri)
    except ValueError:  # "https://[::1" and the like
        raise ServiceError(f"{what} is not a valid URL: {uri}") from None
    if parts.fragment or "#" in uri:
        raise ServiceError(f"{what} must not have a fragment: {uri}")
    if parts.scheme not in {"https", "http"} or not parts.netloc:
        raise ServiceError(f"{what} must be an absolute http(s) URL: {uri}")
    if parts.scheme == "http" and not allow_http and parts.hostname not in _LOOPBACK:
        raise ServiceError(f"{what} must use https (http is for loopback only): {uri}")
    if parts.username or parts.password:
        raise ServiceError(f"{what} must not carry credentials: {uri}")
    return uri


_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def create_client(
    name: str,
    redirect_uris: list[str],
    *,
    public: bool = False,
    first_party: bool = False,
    post_logout_redirect_uris: list[str] | None = None,
    backchannel_logout_uri: str | None = None,
    auth_method: str | None = None,
    grant_types: list[str] | None = None,
    jwks: dict[str, Any] | None = None,
    id_token_alg: str = "RS256",  # noqa: S107 - an algorithm name
    client_id: str | None = None,
    org_id: str | None = None,
    actor: Actor = audit.ANONYMOUS,
    origin: Origin = audit.CLI,
    now: float | None = None,
) -> Created:
    """Register a client; a confidential one gets a secret, returned once."""
    name = name.strip()[:100]
    if not name:
        raise ServiceError("A client needs a name.")
    method = auth_method or ("none" if public else "client_secret_basic")
    if method not in AUTH_METHODS:
        raise ServiceError(f"Unknown client authentication method {method!r}.")
    if method == "private_key_jwt" and not (jwks and jwks.get("keys")):
        raise ServiceError("private_key_jwt needs the client's public keys (jwks).")
    grants = grant_types or ["authorization_code", "refresh_token"]
    if unknown := sorted(set(grants) - set(GRANT_TYPES)):
        raise ServiceError(f"Unsupported grant types: {', '.join(unknown)}.")
    if method == "none" and "client_credentials" in grants:
        raise ServiceError("A public client cannot use client credentials.")
    if id_token_alg not in ("RS256", "ES256"):
        raise ServiceError("id_token_signed_response_alg must be RS256 or ES256.")
    allow_http = runtime().settings.is_dev
    uris = [_check_uri(u, allow_http, "redirect_uri") for u in redirect_uris[:MAX_URIS]]
    if "authorization_code" in grants and not uris:
        raise ServiceError("A client using the authorization code flow needs a redirect_uri.")
    logout_uris = [
        _check_uri(u, allow_http, "post_logout_redirect_uri")
        for u in (post_logout_redirect_uris or [])[:MAX_URIS]
    ]
    if backchannel_logout_uri:
        _check_uri(backchannel_logout_uri, allow_http, "backchannel_logout_uri")
    if client_id is not None and db.session.get(OAuthClient, client_id) is not None:
        raise ServiceError(f"A client with id {client_id!r} exists already.")

    secret = secrets.token_urlsafe(32) if method.startswith("client_secret") else None
    client = OAuthClient(
        id=client_id or secrets.token_urlsafe(16),
        name=name,
        org_id=org_id,
        secret_hash=secret_digest(secret) if secret else None,
        first_party=first_party,
        redirect_uris=uris,
        post_logout_redirect_uris=logout_uris,
        backchannel_logout_uri=backchannel_logout_uri or None,
        grant_types=grants,
        auth_method=method,
        jwks=jwks,
        id_token_alg=id_token_alg,
        require_pkce=True,
    )
    db.session.add(client)
    db.session.flush()
    audit.record(
        "oidc.client.create",
        actor=actor,
        org_id=org_id,
        target=client.id,
        origin=origin,
        details={"name": name, "auth_method": method, "first_party": first_party},
        now=now,
    )
    return Created(client, secret)


def authenticate_first_party(client_id: str, secret: str) -> OAuthClient | None:
    """A first-party confidential client proving itself (the gateway's internal calls)."""
    client = get(client_id)
    if client is None or not client.first_party or not check_secret(client, secret):
        return None
    return client


def get(client_id: str | None) -> OAuthClient | None:
    if not client_id or len(client_id) > 64:
        return None
    return db.session.get(OAuthClient, client_id)


def require(client_id: str) -> OAuthClient:
    client = get(client_id)
    if client is None:
        raise NotFound(f"No client {client_id!r}.")
    return client


def form_target(next_url: str, issuer: str) -> str | None:
    """The origin a sign-in form may end up at after its redirects, for the page's CSP
    ``form-action``: the client's redirect URI when ``next_url`` resumes an authorization
    request of ours (only if registered for that client), or ``next_url``'s own origin."""
    try:
        parts = urlsplit(next_url)
    except ValueError:
        return None
    if parts.netloc and f"{parts.scheme}://{parts.netloc}" != issuer:
        return f"{parts.scheme}://{parts.netloc}"
    if parts.path != "/oauth2/authorize":
        return None
    query = parse_qs(parts.query)
    client = get((query.get("client_id") or [""])[0])
    redirect_uri = (query.get("redirect_uri") or [""])[0]
    if client is None or redirect_uri not in client.redirect_uris:
        return None
    target = urlsplit(redirect_uri)
    return f"{target.scheme}://{target.netloc}"


def all_clients() -> list[OAuthClient]:
    return list(db.session.scalars(select(OAuthClient).order_by(OAuthClient.name)))


def new_secret(
    client: OAuthClient, *, actor: Actor, origin: Origin, now: float | None = None
) -> str:
    """Replace a confidential client's secret; the old one stops working at once."""
    if not client.auth_method.startswith("client_secret"):
        raise ServiceError("This client does not authenticate with a secret.")
    secret = secrets.token_urlsafe(32)
    client.secret_hash = secret_digest(secret)
    audit.record(
        "oidc.client.secret_reset",
        actor=actor,
        org_id=client.org_id,
        target=client.id,
        origin=origin,
        now=now,
    )
    return secret


@dataclass(frozen=True)
class Changes:
    """What an update sets; None leaves a field as it is, "" clears the back-channel URI."""

    name: str | None = None
    redirect_uris: list[str] | None = None
    post_logout_redirect_uris: list[str] | None = None
    backchannel_logout_uri: str | None = None


def update(
    client: OAuthClient,
    changes: Changes,
    *,
    actor: Actor,
    origin: Origin,
    now: float | None = None,
) -> OAuthClient:
    """Change a client's name and registered URIs, checked as at creation; audited with what
    changed, before and after. Nothing is written when a value is refused."""
    allow_http = runtime().settings.is_dev
    after: dict[str, Any] = {}
    if changes.name is not None:
        after["name"] = changes.name.strip()[:100]
        if not after["name"]:
            raise ServiceError("A client needs a name.")
    for field, what in (
        ("redirect_uris", "redirect_uri"),
        ("post_logout_redirect_uris", "post_logout_redirect_uri"),
    ):
        uris: list[str] | None = getattr(changes, field)
        if uris is None:
            continue
        if len(uris) > MAX_URIS:
            raise ServiceError(f"A client may register at most {MAX_URIS} of {field}.")
        after[field] = [_check_uri(u, allow_http, what) for u in uris]
    if not after.get("redirect_uris", True) and "authorization_code" in client.grant_types:
        raise ServiceError("A client using the authorization code flow needs a redirect_uri.")
    if changes.backchannel_logout_uri is not None:
        uri = changes.backchannel_logout_uri
        after["backchannel_logout_uri"] = (
            _check_uri(uri, allow_http, "backchannel_logout_uri") if uri else None
        )
    before = {name: getattr(client, name) for name in after}
    changed = {name for name in after if after[name] != before[name]}
    for name in changed:
        setattr(client, name, after[name])
    if changed:
        audit.record(
            "oidc.client.update",
            actor=actor,
            org_id=client.org_id,
            target=client.id,
            origin=origin,
            details={
                "before": {n: before[n] for n in sorted(changed)},
                "after": {n: after[n] for n in sorted(changed)},
            },
            now=now,
        )
    return client


def delete(client: OAuthClient, *, actor: Actor, origin: Origin, now: float | None = None) -> None:
    """Delete a client with everything issued to it (codes, grants, consents cascade)."""
    client_id, org_id = client.id, client.org_id
    db.session.delete(client)
    audit.record(
        "oidc.client.delete", actor=actor, org_id=org_id, target=client_id, origin=origin, now=now
    )


def describe(client: OAuthClient) -> dict[str, Any]:
    """A client as the CLI's ``--json`` and the admin API show it (never its secret)."""
    return {
        "client_id": client.id,
        "name": client.name,
        "type": "public" if client.is_public else "confidential",
        "auth_method": client.auth_method,
        "first_party": client.first_party,
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "backchannel_logout_uri": client.backchannel_logout_uri,
        "grant_types": client.grant_types,
        "id_token_signed_response_alg": client.id_token_alg,
    }
