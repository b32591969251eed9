"""Custom roles: created, edited and deleted through ``authz``, audited with before and after."""

from __future__ import annotations

from sqlalchemy import func, select

from idp.common import permissions
from idp.common.permissions import MEMBERS_MANAGE
from idp.extensions import db
from idp.models import Membership, Role
from idp.services import audit, authz, orgs
from idp.services.authz import Principal
from idp.services.credentials import Context
from idp.services.errors import NotFound, ServiceError


def list_roles(principal: Principal) -> list[Role]:
    authz.require(principal, MEMBERS_MANAGE)
    return sorted(principal.org.roles, key=lambda r: (not r.builtin, r.name))


def get_role(principal: Principal, role_id: int) -> Role:
    authz.require(principal, MEMBERS_MANAGE)
    role = db.session.get(Role, role_id)
    if role is None or role.org_id != principal.org.id:
        raise NotFound(f"no role {role_id} in {principal.org.slug!r}")
    return role


def members_holding(role: Role) -> int:
    count = db.session.scalar(select(func.count()).where(Membership.role_id == role.id))
    return int(count or 0)


def create(principal: Principal, ctx: Context, name: str, granted: frozenset[str]) -> Role:
    authz.require(principal, MEMBERS_MANAGE)
    _check_names(granted)
    authz.require_grantable(principal, granted)
    role = orgs.create_role(principal.org, name, granted)
    audit.record(
        "role.create",
        actor=principal.actor,
        org_id=principal.org.id,
        target=name,
        origin=ctx.origin,
        details={"permissions": sorted(granted)},
        now=ctx.now,
    )
    return role


def set_permissions(
    principal: Principal, ctx: Context, role_id: int, granted: frozenset[str]
) -> Role:
    """Replace a custom role's permissions; both what it had and what it gets must be yours."""
    role = get_role(principal, role_id)
    _check_names(granted)
    if role.builtin:
        raise ServiceError(f"{role.name!r} is a built-in role; create a custom role instead")
    before = role.permissions
    authz.require_grantable(principal, before | granted)
    for permission in sorted(before ^ granted):
        orgs.set_role_permission(role, permission, permission in granted)
    if before != granted:
        audit.record(
            "role.update",
            actor=principal.actor,
            org_id=principal.org.id,
            target=role.name,
            origin=ctx.origin,
            details={"before": sorted(before), "after": sorted(granted)},
            now=ctx.now,
        )
    return role


def delete(principal: Principal, ctx: Context, role_id: int) -> None:
    role = get_role(principal, role_id)
    if role.builtin:
        raise ServiceError(f"{role.name!r} is a built-in role and cannot be deleted")
    authz.require_grantable(principal, role.permissions)
    if members_holding(role):
        raise ServiceError(f"{role.name!r} is still held by members; give them another role first")
    db.session.delete(role)
    audit.record(
        "role.delete",
        actor=principal.actor,
        org_id=principal.org.id,
        target=role.name,
        origin=ctx.origin,
        details={"permissions": sorted(role.permissions)},
        now=ctx.now,
    )


def _check_names(granted: frozenset[str]) -> None:
    unknown = granted - permissions.ALL
    if unknown:
        raise ServiceError(f"unknown permission(s): {', '.join(sorted(unknown))}")
