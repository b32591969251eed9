"""OpenID Connect provider state: clients, signing keys, codes, grants, refresh tokens, consents.

Secrets are never stored as given: client secrets, codes and refresh tokens are kept as keyed
hashes, private keys sealed (AES-256-GCM).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from idp.extensions import db
from idp.models._types import UtcDateTime, utcnow


class OAuthClient(db.Model):  # type: ignore[name-defined,misc]
    """A relying party. ``first_party`` clients (the gateway) skip the consent page."""

    __tablename__ = "oauth_clients"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the client_id
    name: Mapped[str] = mapped_column(String(100))
    # The organisation whose admins manage it; None for the instance's own (the gateway).
    org_id: Mapped[str | None] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True, default=None
    )
    secret_hash: Mapped[str | None] = mapped_column(String(64), default=None)  # None: public
    first_party: Mapped[bool] = mapped_column(Boolean, default=False)
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(2000), default=None)
    grant_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    auth_method: Mapped[str] = mapped_column(String(40), default="client_secret_basic")
    # Public keys for private_key_jwt client authentication (a JWK set).
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    id_token_alg: Mapped[str] = mapped_column(String(10), default="RS256")
    require_pkce: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    @property
    def is_public(self) -> bool:
        return self.auth_method == "none"


class SigningKey(db.Model):  # type: ignore[name-defined,misc]
    """One token-signing key. Published in the JWKS until ``retire_after`` has passed."""

    __tablename__ = "oauth_signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(10))
    sealed_private_key: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Set when a newer key takes over signing; the key stays published until every token it
    # signed has expired.
    retired_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    retire_after: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)


class AuthorizationCode(db.Model):  # type: ignore[name-defined,misc]
    """A single-use code; kept after use until it expires, so a replay can be detected."""

    __tablename__ = "oauth_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("oauth_clients.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    org_id: Mapped[str | None] = mapped_column(String(36), default=None)
    sid: Mapped[str] = mapped_column(String(64))
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    scope: Mapped[str] = mapped_column(String(1000))
    nonce: Mapped[str | None] = mapped_column(String(512), default=None)
    code_challenge: Mapped[str | None] = mapped_column(String(128), default=None)
    code_challenge_method: Mapped[str | None] = mapped_column(String(10), default=None)
    auth_time: Mapped[float] = mapped_column()
    amr: Mapped[list[str]] = mapped_column(JSON, default=list)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    grant_id: Mapped[str | None] = mapped_column(String(36), default=None)


class TokenGrant(db.Model):  # type: ignore[name-defined,misc]
    """What one authorisation produced: a family of refresh tokens and the access tokens
    issued from them. Revoking the grant ends them all."""

    __tablename__ = "oauth_grants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_clients.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True, default=None
    )
    org_id: Mapped[str | None] = mapped_column(String(36), default=None)
    # The IdP session it came from; None for offline access, which outlives the session.
    sid: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    scope: Mapped[str] = mapped_column(String(1000))
    auth_time: Mapped[float | None] = mapped_column(default=None)
    amr: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)


class RefreshToken(db.Model):  # type: ignore[name-defined,misc]
    """One refresh token of a grant. Each use rotates it; presenting a used one again is
    taken as theft and revokes the whole grant."""

    __tablename__ = "oauth_refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_grants.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)


class Consent(db.Model):  # type: ignore[name-defined,misc]
    """The scopes a user allowed a third-party client; revocable from the account page."""

    __tablename__ = "oauth_consents"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    client_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_clients.id", ondelete="CASCADE"), primary_key=True
    )
    scope: Mapped[str] = mapped_column(String(1000))
    granted_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
