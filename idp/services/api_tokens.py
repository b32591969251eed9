"""Personal API tokens: shown once, stored as SHA-256, revocable, audited."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from idp.common.permissions import MEMBERS_MANAGE
from idp.extensions import db
from idp.models import ApiToken, User
from idp.services import audit, authz
from idp.services.authz import Principal
from idp.services.credentials import Context
from idp.services.errors import NotFound, ServiceError

PREFIX = "bsc_"
MAX_TOKEN_LENGTH = 100


@dataclass(frozen=True)
class Issued:
    token: ApiToken
    secret: str  # shown to the caller once, never stored


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def create(principal: Principal, ctx: Context, owner: User, name: str) -> Issued:
    """A token acting as ``owner`` in the principal's organisation (only for oneself, unless
    the principal manages members)."""
    if principal.user is None or principal.user.id != owner.id:
        authz.require(principal, MEMBERS_MANAGE)
    membership = authz.membership_of(owner, principal.org)
    if membership is None:
        raise ServiceError(f"{owner.email} is not a member of {principal.org.slug!r}")
    # A token acts with its owner's permissions: an admin minting one for an owner would
    # gain what the owner holds (billing.manage), so only for members one could grant to.
    authz.require_grantable(principal, membership.role.permissions)
    name = name.strip()[:100] or "API token"
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=owner.id,
        org_id=principal.org.id,
        name=name,
        token_hash=_digest(secret),
        hint=secret[:10],
    )
    db.session.add(token)
    db.session.flush()
    audit.record(
        "api_token.create",
        actor=principal.actor,
        org_id=principal.org.id,
        target=owner.email,
        origin=ctx.origin,
        details={"token_id": token.id, "name": name},
        now=ctx.now,
    )
    return Issued(token, secret)


def authenticate(secret: str) -> Principal | None:
    """The principal a bearer token acts as, or None if unknown, revoked or its user disabled.

    The lookup is by SHA-256 of the presented token, so no comparison leaks timing about
    stored tokens.
    """
    if not secret.startswith(PREFIX) or len(secret) > MAX_TOKEN_LENGTH:
        return None
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(secret)))
    if token is None or token.revoked_at is not None or not token.user.is_active:
        return None
    token.last_used_at = datetime.now(UTC)
    db.session.commit()
    return Principal(token.user, token.org, "api_token")


def list_tokens(principal: Principal) -> list[ApiToken]:
    """One's own tokens; every token of the organisation for those who manage members."""
    query = select(ApiToken).where(ApiToken.org_id == principal.org.id)
    if not authz.can(principal, MEMBERS_MANAGE):
        if principal.user is None:
            return []
        query = query.where(ApiToken.user_id == principal.user.id)
    return list(db.session.scalars(query.order_by(ApiToken.id)))


def revoke(principal: Principal, ctx: Context, token_id: int) -> None:
    token = db.session.get(ApiToken, token_id)
    if token is None or token.org_id != principal.org.id:
        raise NotFound(f"no API token {token_id}")
    own = principal.user is not None and token.user_id == principal.user.id
    if not own:
        authz.require(principal, MEMBERS_MANAGE)
    if token.revoked_at is None:
        token.revoked_at = datetime.now(UTC)
        audit.record(
            "api_token.revoke",
            actor=principal.actor,
            org_id=principal.org.id,
            target=token.user.email,
            origin=ctx.origin,
            details={"token_id": token.id},
            now=ctx.now,
        )
