"""Who must use a second factor: the organisation's policy, its grace period, the SSO exemption.

Each organisation sets ``mfa_policy`` to "off", "admins" (members whose role holds any
administrative permission) or "everyone", and optionally ``mfa_grace_until``. A user belongs
to possibly several organisations: the strictest one applies, so switching the active
organisation can never dodge a stricter one. People who signed in through their company's
SAML IdP ("ext" in the session's amr) are exempt: that IdP owns their authentication.
"""

from __future__ import annotations

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


def set_policy(
    principal: Principal, ctx: Context, policy: str, grace_days: int | None = None
) -> None:
    """Change the organisation's policy (needs ``security.manage``); audited."""
    authz.require(principal, SECURITY_MANAGE)
    if policy not in POLICIES:
        raise ServiceError(f"mfa_policy must be one of {', '.join(POLICIES)}")
    if grace_days is not None and not 0 <= grace_days <= MAX_GRACE_DAYS:
        raise ServiceError(f"the grace period is 0 to {MAX_GRACE_DAYS} days")
    org = principal.org
    before = {"policy": org.mfa_policy, "grace_until": _iso(org.mfa_grace_until)}
    org.mfa_policy = policy
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
