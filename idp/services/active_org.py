"""Which organisation a signed-in person acts in, and switching it.

The session names one active organisation; every permission check (``authz``) is made in it.
Switching is allowed only into an organisation the person belongs to now, and is audited:
it changes what the session may do, so the caller also rotates the session id.
"""

from __future__ import annotations

from idp.extensions import db
from idp.models import Membership, Organisation, User
from idp.services import audit, authz
from idp.services.audit import Actor, Origin
from idp.services.authz import Principal
from idp.services.errors import NotFound


def memberships(user: User) -> list[Membership]:
    return sorted(user.memberships, key=lambda m: (m.org.name.lower(), m.org.slug))


def held_in(user: User, org_id: str | None) -> frozenset[str]:
    """The permissions ``user`` holds in that organisation right now (none if not a member)."""
    org = db.session.get(Organisation, org_id) if org_id else None
    if org is None:
        return frozenset()
    return authz.permissions_of(Principal(user, org, "session"))


def switch(
    user: User, org_id: str, *, current: str | None, origin: Origin, now: float
) -> Organisation:
    """The organisation to act in from now on; NotFound unless ``user`` is a member of it.

    The same answer for an unknown organisation and one the user is not in: no probing.
    """
    target = next((m.org for m in user.memberships if m.org_id == org_id), None)
    if target is None:
        raise NotFound("You are not a member of that organisation.")
    previous = db.session.get(Organisation, current) if current else None
    audit.record(
        "session.org_switch",
        actor=Actor(user.id, user.email),
        org_id=target.id,
        target=target.slug,
        origin=origin,
        details={"from": previous.slug if previous else None, "to": target.slug},
        now=now,
    )
    return target
