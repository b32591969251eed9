"""Who must use a second factor: the organisation's policy, its grace period, the SSO exemption.

Each organisation sets ``mfa_policy`` to "off", "admins" (members whose role holds any
administrative permission) or "everyone", and optionally ``mfa_grace_until``. A user belongs
to possibly several organisations: the strictest one applies, so switching the active
organisation can never dodge a stricter one. People who signed in through their company's
SAML IdP ("ext" in the session's amr) are exempt: that IdP owns their authentication.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from idp.common.permissions import ADMINISTRATIVE, SECURITY_MANAGE
from idp.extensions import db
from idp.models import Membership, Organisation, User
from idp.services import audit, authz
from idp.services.authz import Principal
from idp.services.credentials import Context
from idp.services.errors import ServiceError

POLICIES = ("off", "admins", "everyone")
MAX_GRACE_DAYS = 90
# Each policy in plain words, for the admin console (overview and settings page).
DESCRIPTIONS = {
    "off": "Not required: members may still add a second factor for themselves.",
    "admins": "Required for administrators: everyone whose role may manage members or "
    "security settings, or read the audit log.",
    "everyone": "Required for everyone in the organisation.",
}


@dataclass(frozen=True)
class Requirement:
    required: bool  # a policy asks this user for a second factor
    deadline: datetime | None = None  # until then the user may still sign in without one

    @property
    def enforced(self) -> bool:
        return self.required and self.deadline is None


def applies_to(member: Membership) -> bool:
    policy = member.org.mfa_policy
    if policy == "everyone":
        return True
    return policy == "admins" and bool(member.role.permissions & ADMINISTRATIVE)


def requirement(user: User, amr: Sequence[str], now: float) -> Requirement:
    """Whether ``user``, signed in with ``amr``, must have a second factor now.

    Exempt when "ext" is in ``amr`` (federated sign-in). Otherwise the strictest of the
    user's organisations wins; a grace period counts only while every requiring organisation
    still grants one, and the earliest deadline is the one shown.
    """
    if "ext" in amr:
        return Requirement(False)
    deadlines = []
    # Only memberships in organisations with a policy are loaded: most sign-ins stop here.
    candidates = db.session.scalars(
        select(Membership)
        .join(Organisation, Membership.org_id == Organisation.id)
        .where(Membership.user_id == user.id, Organisation.mfa_policy != "off")
    ).all()
    for member in candidates:
        if not applies_to(member):
            continue
        grace = member.org.mfa_grace_until
        if grace is None or grace.timestamp() <= now:
            return Requirement(True)
        deadlines.append(grace)
    return Requirement(True, min(deadlines)) if deadlines else Requirement(False)


@dataclass(frozen=True)
class Current:
    """The organisation's policy as an admin sees it."""

    policy: str
    grace_until: datetime | None  # the deadline as set, even once passed
    grace_days: int  # whole days left before the deadline (rounded up), 0 when none is left


def grace_days_left(org: Organisation, now: float) -> int:
    """Days until ``org``'s grace period ends, rounded up, so a deadline tomorrow reads 1."""
    grace = org.mfa_grace_until
    if grace is None or grace.timestamp() <= now:
        return 0
    # Whole seconds first: the stored microseconds may round a fraction past "14 days".
    return max(1, math.ceil(int(grace.timestamp() - now) / 86400))


def view(principal: Principal, now: float) -> Current:
    """The policy in force (needs ``security.manage``, as changing it does)."""
    authz.require(principal, SECURITY_MANAGE)
    org = principal.org
    return Current(org.mfa_policy, org.mfa_grace_until, grace_days_left(org, now))


def check(policy: str, grace_days: int | None) -> None:
    """Refuse a policy or grace period ``set_policy`` would refuse, before anything is written
    (the API checks it first, so that a request changing other settings too is all or nothing).
    """
    if policy not in POLICIES:
        raise ServiceError(f"mfa_policy must be one of {', '.join(POLICIES)}")
    if grace_days is not None and not 0 <= grace_days <= MAX_GRACE_DAYS:
        raise ServiceError(f"mfa_grace_days must be between 0 and {MAX_GRACE_DAYS}")


def set_policy(
    principal: Principal,
    ctx: Context,
    policy: str,
    grace_days: int | None = None,
    *,
    keep_grace: bool = False,
) -> None:
    """Change the organisation's policy (needs ``security.manage``); audited.

    ``grace_days`` (0 or None: none) starts a new grace period today; ``keep_grace`` leaves the
    current deadline as it is instead, so changing who is covered does not move it.
    """
    authz.require(principal, SECURITY_MANAGE)
    check(policy, grace_days)
    org = principal.org
    before = {"policy": org.mfa_policy, "grace_until": _iso(org.mfa_grace_until)}
    org.mfa_policy = policy
    if not keep_grace:
        org.mfa_grace_until = (
            datetime.fromtimestamp(ctx.now + grace_days * 86400, UTC) if grace_days else None
        )
    audit.record(
        "org.mfa_policy_change",
        actor=principal.actor,
        org_id=org.id,
        target=org.slug,
        origin=ctx.origin,
        details={
            "before": before,
            "after": {"policy": policy, "grace_until": _iso(org.mfa_grace_until)},
        },
        now=ctx.now,
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
