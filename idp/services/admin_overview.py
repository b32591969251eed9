"""What the admin console's front page summarises, for anyone who administers the organisation.

Each part is shown only to those allowed to see it: the member counts and two-factor adoption
(with the policy in force) to any administrator, recent events only with ``audit.read``.
Someone without any administrative permission is refused here, as every other admin page
refuses them, by ``authz``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from idp.common import permissions
from idp.common.permissions import ADMINISTRATIVE, AUDIT_READ
from idp.extensions import db
from idp.models import AuditEvent, Membership, User
from idp.services import audit_query, authz, mfa, mfa_policy
from idp.services.authz import Forbidden, Principal

RECENT_EVENTS = 10


@dataclass(frozen=True)
class MemberCounts:
    total: int
    active: int  # can sign in: enabled, with a password set
    invited: int  # has not chosen a password yet
    disabled: int


@dataclass(frozen=True)
class SecondFactors:
    """How far two-factor sign-in has spread, beside the policy that asks for it."""

    enrolled: int  # members with an authenticator app or a security key
    total: int  # all members, as in MemberCounts.total
    policy: str  # one of mfa_policy.POLICIES
    grace_until: datetime | None  # until then, those without a factor may still sign in
    grace_days: int  # whole days of grace left; 0: the policy is enforced now


@dataclass(frozen=True)
class Summary:
    held: frozenset[str]  # the administrative permissions the principal holds
    members: MemberCounts
    recent: list[AuditEvent] | None  # None: not allowed to read the audit log
    second_factors: SecondFactors


def administrative_permissions(principal: Principal) -> frozenset[str]:
    """Which parts of the console the principal may use (for display; services enforce)."""
    return authz.permissions_of(principal) & ADMINISTRATIVE


def summary(principal: Principal, now: float | None = None) -> Summary:
    """The overview of ``principal``'s organisation (``now`` dates the grace period left)."""
    held = administrative_permissions(principal)
    if not held:
        names = ", ".join(sorted(permissions.ADMINISTRATIVE))
        raise Forbidden(
            f"The admin console is for administrators. Your role in {principal.org.slug!r} "
            f"holds none of the permissions it needs ({names})."
        )
    recent = None
    if AUDIT_READ in held:
        recent = audit_query.search(principal, per_page=RECENT_EVENTS).items
    counts = _count_members(principal)
    when = time.time() if now is None else now
    return Summary(held, counts, recent, _second_factors(principal, counts.total, when))


def _second_factors(principal: Principal, total: int, now: float) -> SecondFactors:
    org = principal.org
    return SecondFactors(
        enrolled=mfa.count_members_with_factor(org.id),
        total=total,
        policy=org.mfa_policy,
        grace_until=org.mfa_grace_until,
        grace_days=mfa_policy.grace_days_left(org, now),
    )


def _count_members(principal: Principal) -> MemberCounts:
    rows = db.session.execute(
        select(User.is_active, User.password_hash.is_not(None), func.count())
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.org_id == principal.org.id)
        .group_by(User.is_active, User.password_hash.is_not(None))
    ).all()
    total = sum(n for _, _, n in rows)
    disabled = sum(n for is_active, _, n in rows if not is_active)
    invited = sum(n for is_active, has_pw, n in rows if is_active and not has_pw)
    return MemberCounts(total, total - disabled - invited, invited, disabled)
