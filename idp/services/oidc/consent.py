"""Consent: which third-party clients a user allowed, for which scopes; revocable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from idp.extensions import db
from idp.models import User
from idp.models.oidc import Consent, OAuthClient, TokenGrant
from idp.services import audit
from idp.services.audit import Actor, Origin
from idp.services.errors import NotFound
from idp.services.oidc import tokens


def needed(client: OAuthClient, user: User, scope: str) -> bool:
    """First-party clients need none; others need a consent covering every scope asked."""
    if client.first_party:
        return False
    given = db.session.get(Consent, (user.id, client.id))
    return given is None or not set(scope.split()).issubset(given.scope.split())


def grant(client: OAuthClient, user: User, scope: str, origin: Origin) -> None:
    given = db.session.get(Consent, (user.id, client.id))
    if given is None:
        db.session.add(Consent(user_id=user.id, client_id=client.id, scope=scope))
    else:
        given.scope = " ".join(sorted(set(given.scope.split()) | set(scope.split())))
    audit.record(
        "oidc.consent.grant",
        actor=Actor(user.id, user.email),
        target=client.id,
        origin=origin,
        details={"scope": scope},
    )


@dataclass(frozen=True)
class Given:
    client_id: str
    client_name: str
    scope: list[str]
    granted_at: datetime


def given_by(user: User) -> list[Given]:
    rows = db.session.execute(
        select(Consent, OAuthClient)
        .join(OAuthClient, Consent.client_id == OAuthClient.id)
        .where(Consent.user_id == user.id)
        .order_by(OAuthClient.name)
    )
    return [Given(c.client_id, client.name, c.scope.split(), c.granted_at) for c, client in rows]


def revoke(user: User, client_id: str, origin: Origin) -> None:
    """Withdraw consent: the client's grants for this user end too."""
    given = db.session.get(Consent, (user.id, client_id))
    if given is None:
        raise NotFound("No such consent.")
    db.session.delete(given)
    grant_ids = db.session.scalars(
        select(TokenGrant.id).where(
            TokenGrant.user_id == user.id,
            TokenGrant.client_id == client_id,
            TokenGrant.revoked_at.is_(None),
        )
    ).all()
    audit.record(
        "oidc.consent.revoke", actor=Actor(user.id, user.email), target=client_id, origin=origin
    )
    for grant_id in grant_ids:
        tokens.revoke_grant(grant_id, "consent_revoked", origin=origin)
