"""The one place that decides whether an actor may do something in an organisation.

Every admin page, API endpoint and CLI command goes through ``require``: deny by default.
Permissions are read from the database on every call (a membership row and its role), never
cached, so a role change or a removal takes effect on the member's very next request.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from idp.common import permissions
from idp.extensions import db
from idp.models import Membership, Organisation, User
from idp.services.audit import Actor
from idp.services.errors import ServiceError


class Forbidden(ServiceError):
    """The actor lacks the permission (or is not a member of the organisation)."""


@dataclass(frozen=True)
class Principal:
    """Who is acting, and in which organisation. ``user`` is None for the operator's CLI."""

    user: User | None
    org: Organisation
    via: str  # "session", "api_token", "cli"

    @property
    def actor(self) -> Actor:
        if self.user is None:
            return Actor(email="operator (cli)")
        return Actor(self.user.id, self.user.email)


def operator(org: Organisation) -> Principal:
    """The operator at the command line: trusted with every permission, as root is."""
    return Principal(None, org, "cli")


def membership_of(user: User, org: Organisation) -> Membership | None:
    return db.session.scalar(
        select(Membership).where(Membership.user_id == user.id, Membership.org_id == org.id)
    )


def permissions_of(principal: Principal) -> frozenset[str]:
    """The permissions the principal holds in its organisation right now."""
    if principal.via == "cli" and principal.user is None:
        return permissions.ALL
    user = principal.user
    if user is None or not user.is_active:
        return frozenset()
    member = membership_of(user, principal.org)
    return member.role.permissions if member is not None else frozenset()


def can(principal: Principal, permission: str) -> bool:
    return permission in permissions_of(principal)


def require(principal: Principal, permission: str) -> None:
    if not can(principal, permission):
        raise Forbidden(f"You need the {permission!r} permission in {principal.org.slug!r}.")


def require_grantable(principal: Principal, granted: Iterable[str]) -> None:
    """An actor can hand out only permissions it holds itself (no escalation by delegation)."""
    missing = sorted(set(granted) - permissions_of(principal))
    if missing:
        raise Forbidden(f"You cannot grant permissions you do not hold: {', '.join(missing)}.")
