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
    parts = urlsplit(uri)
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


def new_secret(client: OAuthClient, *, actor: Actor, origin: Origin) -> str:
    """Replace a confidential client's secret; the old one stops working at once."""
    if not client.auth_method.startswith("client_secret"):
        raise ServiceError("This client does not authenticate with a secret.")
    secret = secrets.token_urlsafe(32)
    client.secret_hash = secret_digest(secret)
    audit.record("oidc.client.secret_reset", actor=actor, target=client.id, origin=origin)
    return secret


def delete(client: OAuthClient, *, actor: Actor, origin: Origin) -> None:
    """Delete a client with everything issued to it (codes, grants, consents cascade)."""
    client_id = client.id
    db.session.delete(client)
    audit.record("oidc.client.delete", actor=actor, target=client_id, origin=origin)
