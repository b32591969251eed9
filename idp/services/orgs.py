"""Organisations, their built-in and custom roles, and memberships."""

from __future__ import annotations

import re

from sqlalchemy import select

from idp.common import permissions
from idp.extensions import db
from idp.models import Membership, Organisation, Role, RolePermission, User
from idp.services.errors import NotFound, ServiceError

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def find(slug: str) -> Organisation | None:
    return db.session.scalar(select(Organisation).where(Organisation.slug == slug))


def get(slug: str) -> Organisation:
    org = find(slug)
    if org is None:
        raise NotFound(f"no organisation {slug!r}")
    return org


def create(slug: str, name: str) -> Organisation:
    """A new organisation with the four built-in roles. The caller commits."""
    if not _SLUG.match(slug):
        raise ServiceError(
            f"{slug!r} is not a valid slug: use lower-case letters, digits and hyphens"
        )
    if find(slug) is not None:
        raise ServiceError(f"organisation {slug!r} already exists")
    org = Organisation(slug=slug, name=(name or slug).strip()[:200])
    db.session.add(org)
    for role_name, granted in permissions.BUILTIN_ROLES.items():
        _add_role(org, role_name, granted, builtin=True)
    db.session.flush()
    return org


def _add_role(org: Organisation, name: str, granted: frozenset[str], builtin: bool) -> Role:
    role = Role(org=org, name=name, builtin=builtin)
    role.grants = [RolePermission(permission=p) for p in sorted(granted)]
    db.session.add(role)
    return role


def find_role(org: Organisation, name: str) -> Role | None:
    return db.session.scalar(select(Role).where(Role.org_id == org.id, Role.name == name))


def get_role(org: Organisation, name: str) -> Role:
    role = find_role(org, name)
    if role is None:
        raise NotFound(f"organisation {org.slug!r} has no role {name!r}")
    return role


def create_role(org: Organisation, name: str, granted: frozenset[str]) -> Role:
    if not _SLUG.match(name):
        raise ServiceError(f"{name!r} is not a valid role name: use lower-case letters, digits, -")
    if find_role(org, name) is not None:
        raise ServiceError(f"role {name!r} already exists in {org.slug!r}")
    role = _add_role(org, name, granted, builtin=False)
    db.session.flush()
    return role


def set_role_permission(role: Role, permission: str, granted: bool) -> bool:
    """Grant or revoke one permission; False when nothing changed. The caller commits."""
    if permission not in permissions.ALL:
        raise ServiceError(f"unknown permission {permission!r}")
    if role.builtin:
        raise ServiceError(f"{role.name!r} is a built-in role; create a custom role instead")
    current = {g.permission: g for g in role.grants}
    if granted and permission not in current:
        role.grants.append(RolePermission(permission=permission))
        return True
    if not granted and permission in current:
        role.grants.remove(current[permission])
        return True
    return False


def membership(user: User, org: Organisation) -> Membership | None:
    return db.session.scalar(
        select(Membership).where(Membership.user_id == user.id, Membership.org_id == org.id)
    )


def add_member(user: User, org: Organisation, role: Role) -> Membership:
    if membership(user, org) is not None:
        raise ServiceError(f"{user.email} is already a member of {org.slug!r}")
    member = Membership(user=user, org=org, role=role)
    db.session.add(member)
    db.session.flush()
    return member


def set_member_role(member: Membership, role: Role) -> str:
    """Change a member's role; returns the old role's name. The last owner stays an owner."""
    old = member.role.name
    if old == "owner" and role.name != "owner" and owner_count(member.org) <= 1:
        raise ServiceError(f"{member.user.email} is the last owner of {member.org.slug!r}")
    member.role = role
    return old


def owner_count(org: Organisation) -> int:
    owner = get_role(org, "owner")
    return len(
        db.session.scalars(select(Membership.id).where(Membership.role_id == owner.id)).all()
    )
