"""Managing an organisation's members: every operation checked by ``authz`` and audited.

The admin console, the admin API and the CLI all call these functions; none of them checks a
permission on its own. Members are looked up within the principal's organisation only, so an id
from another organisation is simply "not found".
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from idp.common.permissions import MEMBERS_MANAGE
from idp.extensions import db
from idp.models import Membership, User
from idp.services import audit, authz, credentials, orgs, sessions, users
from idp.services.authz import Forbidden, Principal
from idp.services.credentials import Context
from idp.services.errors import NotFound, ServiceError


@dataclass(frozen=True)
class Page:
    items: list[Membership]
    total: int
    page: int
    per_page: int


def list_members(principal: Principal, page: int = 1, per_page: int = 50) -> Page:
    authz.require(principal, MEMBERS_MANAGE)
    page, per_page = max(1, page), min(max(1, per_page), 200)
    query = select(Membership).where(Membership.org_id == principal.org.id)
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = db.session.scalars(
        query.join(User).order_by(User.email).offset((page - 1) * per_page).limit(per_page)
    ).all()
    return Page(list(items), total, page, per_page)


def get_member(principal: Principal, member_id: int) -> Membership:
    authz.require(principal, MEMBERS_MANAGE)
    member = db.session.get(Membership, member_id)
    if member is None or member.org_id != principal.org.id:
        raise NotFound(f"no member {member_id} in {principal.org.slug!r}")
    return member


def _require_control(principal: Principal, member: Membership) -> None:
    """Acting on a member needs every permission that member holds: an admin cannot touch
    an owner, and nobody can act on a role above their own."""
    authz.require_grantable(principal, member.role.permissions)


def invite(
    principal: Principal,
    ctx: Context,
    email: str,
    role_name: str,
    name: str = "",
    password: str | None = None,
) -> tuple[Membership, str | None]:
    """Add a member, creating the account if needed. A new account gets ``password`` (checked
    against the policy) or else an invitation link, which is returned."""
    authz.require(principal, MEMBERS_MANAGE)
    role = orgs.get_role(principal.org, role_name)
    authz.require_grantable(principal, role.permissions)
    user = users.find_by_email(email) or users.create_user(email, name)
    member = orgs.add_member(user, principal.org, role)
    if password is not None and user.password_hash is None:
        violation = users.check_new_password(user, password, ctx.settings.password_min_length)
        if violation:
            raise users.PasswordRejected(violation)
        users.set_password(user, password, rounds=ctx.settings.bcrypt_rounds)
    audit.record(
        "member.invite",
        actor=principal.actor,
        org_id=principal.org.id,
        target=user.email,
        origin=ctx.origin,
        details={"role": role.name},
        now=ctx.now,
    )
    link = None
    if user.password_hash is None:
        link = credentials.invite(
            ctx, user, principal.org, invited_by=principal.actor, event="invitation.send"
        )
    return member, link


def resend_invitation(principal: Principal, ctx: Context, member_id: int) -> str:
    member = get_member(principal, member_id)
    if member.user.password_hash is not None:
        raise ServiceError(f"{member.user.email} has already set a password")
    return credentials.invite(
        ctx, member.user, principal.org, invited_by=principal.actor, event="invitation.send"
    )


def change_role(principal: Principal, ctx: Context, member_id: int, role_name: str) -> None:
    member = get_member(principal, member_id)
    role = orgs.get_role(principal.org, role_name)
    _require_control(principal, member)
    authz.require_grantable(principal, role.permissions)
    before = orgs.set_member_role(member, role)
    audit.record(
        "member.role_change",
        actor=principal.actor,
        org_id=principal.org.id,
        target=member.user.email,
        origin=ctx.origin,
        details={"before": before, "after": role.name},
        now=ctx.now,
    )


def set_active(principal: Principal, ctx: Context, member_id: int, active: bool) -> int:
    """Disable or re-enable the member's account; only for accounts of this organisation alone."""
    member = get_member(principal, member_id)
    _require_control(principal, member)
    if member.user.id == (principal.user.id if principal.user else None):
        raise ServiceError("You cannot disable your own account.")
    others = [m for m in member.user.memberships if m.org_id != principal.org.id]
    if others:
        raise Forbidden(
            f"{member.user.email} also belongs to other organisations; "
            "remove them from this one instead."
        )
    if not active:
        _keep_an_owner(member)
    return users.set_active(
        member.user, active, store=ctx.store, actor=principal.actor, origin=ctx.origin
    )


def remove(principal: Principal, ctx: Context, member_id: int) -> None:
    member = get_member(principal, member_id)
    _require_control(principal, member)
    _keep_an_owner(member)
    email = member.user.email
    db.session.delete(member)
    audit.record(
        "member.remove",
        actor=principal.actor,
        org_id=principal.org.id,
        target=email,
        origin=ctx.origin,
        details={"role": member.role.name},
        now=ctx.now,
    )


def revoke_sessions(principal: Principal, ctx: Context, member_id: int) -> int:
    """Sign a member out everywhere they act in this organisation; audited."""
    member = get_member(principal, member_id)
    _require_control(principal, member)
    # Someone who also belongs to other organisations keeps the sessions they use there: one
    # organisation's admins end only the sessions active in their organisation.
    shared = any(m.org_id != principal.org.id for m in member.user.memberships)
    only = principal.org.id if shared else None
    ended = sessions.revoke_all(ctx.store, member.user.id, org_id=only)
    audit.record(
        "session.revoke_all",
        actor=principal.actor,
        org_id=principal.org.id,
        target=member.user.email,
        origin=ctx.origin,
        details={"count": ended},
        now=ctx.now,
    )
    return ended


def _keep_an_owner(member: Membership) -> None:
    if member.role.name == "owner" and orgs.owner_count(member.org) <= 1:
        raise ServiceError(f"{member.user.email} is the last owner of {member.org.slug!r}")
