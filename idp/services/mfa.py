"""Second factors: the rules around TOTP, WebAuthn and recovery codes, each step audited.

The mechanisms live in ``totp``, ``webauthn_service`` and ``recovery_codes``; this module adds
what they do not know: throttling of wrong codes, recent authentication before a factor is
added or removed, recovery codes handed out with the first factor, and the audit trail of
every enrolment, use, failure, removal and reset. Security keys are in ``mfa_keys`` (which uses
the helpers here), the organisation policy in ``mfa_policy``; the admin's reset is
``reset_factors`` below.

Database writes are committed (by ``audit.record``) before the shared store is written, and
rolled back before a failure is counted: on SQLite the store shares the database file and
must not wait on an open ORM write transaction.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, exists, func, or_, select

from idp.common.sealing import Keyring
from idp.common.store import Store
from idp.config import Settings
from idp.extensions import db
from idp.models import Membership, TotpFactor, User, WebAuthnCredential
from idp.services import (
    audit,
    authz,
    credentials,
    members,
    mfa_policy,
    recovery_codes,
    throttle,
    totp,
    webauthn_service,
)
from idp.services.audit import Actor, Origin
from idp.services.authz import Principal
from idp.services.errors import NotFound, ServiceError
from idp.services.throttle import ThrottlePolicy

# Removing or adding a factor, regenerating codes, changing the password: a stolen session
# that is older than this must first prove the password (and second factor) again.
REAUTH_SECONDS = 10 * 60
# Wrong second-factor codes per account: 5, then a lock of 60 s that doubles up to an hour.
# Three valid TOTP codes out of a million per try makes guessing hopeless at this rate.
CODE_POLICY = ThrottlePolicy(max_failures=5, lockout_seconds=60, ip_max_failures=50)


class ReauthRequired(ServiceError):
    """The session's sign-in is too old for this change."""

    def __init__(self) -> None:
        super().__init__("For your security, confirm it is you before changing this.")


class TooManyCodes(ServiceError):
    """Too many wrong second-factor codes for this account: wait, then retry."""

    def __init__(self, retry_after: int) -> None:
        minutes = max(1, round(retry_after / 60))
        super().__init__(f"Too many wrong codes. Try again in about {minutes} minute(s).")
        self.retry_after = retry_after


class WrongCode(ServiceError):
    """The code is not right (or was already used)."""


@dataclass(frozen=True)
class Context:
    """What factor operations need from the running instance."""

    settings: Settings
    store: Store
    keyring: Keyring
    origin: Origin
    now: float

    @property
    def rp(self) -> webauthn_service.RelyingParty:
        return webauthn_service.relying_party(self.settings)


@dataclass(frozen=True)
class Status:
    totp: bool
    keys: list[WebAuthnCredential]
    recovery_left: int

    @property
    def enabled(self) -> bool:
        return self.totp or bool(self.keys)


def status(user: User) -> Status:
    return Status(
        totp=totp.factor_of(user) is not None,
        keys=webauthn_service.credentials_of(user),
        recovery_left=recovery_codes.remaining(user),
    )


def _has_factor(user_id: Any) -> ColumnElement[bool]:
    """True where the user holds an authenticator app or a security key (codes alone do not
    count: they only stand in for a factor)."""
    return or_(
        exists().where(TotpFactor.user_id == user_id),
        exists().where(WebAuthnCredential.user_id == user_id),
    )


def with_second_factor(user_ids: Collection[str]) -> set[str]:
    """Which of ``user_ids`` have a second factor: one query for a page of a listing that the
    caller was already allowed to read (it only annotates those rows)."""
    if not user_ids:
        return set()
    found = db.session.scalars(
        select(User.id).where(User.id.in_(list(user_ids)), _has_factor(User.id))
    )
    return set(found)


def count_members_with_factor(org_id: str) -> int:
    """How many members of the organisation have a second factor (the overview's adoption)."""
    query = (
        select(func.count())
        .select_from(Membership)
        .where(Membership.org_id == org_id, _has_factor(Membership.user_id))
    )
    return db.session.scalar(query) or 0


def methods(user: User) -> list[str]:
    """The second factors the user can sign in with, in the order the page offers them."""
    found = status(user)
    allowed = ["totp"] if found.totp else []
    allowed += ["webauthn"] if found.keys else []
    if allowed and found.recovery_left:
        allowed.append("recovery")
    return allowed


def after_password(user: User, amr: list[str], now: float) -> str:
    """What follows a correct password: "second_factor", "enrol" or "sign_in"."""
    # One EXISTS query on the hot path of every sign-in, rather than loading each factor kind.
    if db.session.scalar(select(_has_factor(user.id))):
        return "second_factor"
    if mfa_policy.requirement(user, amr, now).enforced:
        return "enrol"
    return "sign_in"


def login_amr(first: list[str], second: str) -> list[str]:
    """RFC 8176 values for a sign-in that added ``second`` ("otp", "hwk", "swk")."""
    return [*first, second, "mfa"]


def require_recent(auth_time: float | None, now: float) -> None:
    if auth_time is None or now - auth_time > REAUTH_SECONDS:
        raise ReauthRequired()


def actor(user: User) -> Actor:
    return Actor(user.id, user.email)


def record(ctx: Context, user: User, event: str, outcome: str = "success", **details: Any) -> None:
    audit.record(
        event, outcome=outcome, actor=actor(user), origin=ctx.origin, details=details, now=ctx.now
    )


def first_factor_codes(ctx: Context, user: User) -> list[str] | None:
    """Recovery codes come with the first factor; adding a second one keeps the set."""
    if recovery_codes.remaining(user):
        return None
    return recovery_codes.generate(ctx.keyring, user, ctx.now)


# --- codes: TOTP or a recovery code ----------------------------------------------------------


def throttle_key(user: User) -> str:
    # The throttle is keyed by a string it hashes; this one cannot collide with an email.
    return f"second-factor:{user.id}"


def check_throttle(ctx: Context, user: User, event: str) -> None:
    wait = throttle.retry_after(ctx.store, throttle_key(user), ctx.origin.ip, ctx.now)
    if wait:
        record(ctx, user, event, "failure", reason="locked", retry_after=wait)
        raise TooManyCodes(wait)


def count_failure(ctx: Context, user: User, event: str, reason: str, **details: Any) -> None:
    db.session.rollback()
    locked_for = throttle.register_failure(
        ctx.store, throttle_key(user), ctx.origin.ip, ctx.now, CODE_POLICY
    )
    record(ctx, user, event, "failure", reason=reason, **details)
    if locked_for:
        record(ctx, user, "mfa.lockout", "failure", seconds=locked_for)


@dataclass(frozen=True)
class CodeUse:
    method: str  # "totp" or "recovery"
    recovery_left: int | None = None  # after a recovery code: how many are left


def use_code(ctx: Context, user: User, code: str) -> CodeUse:
    """Check a sign-in code: a TOTP code or, failing that shape, a recovery code.

    Raises WrongCode (counted towards the lock) or TooManyCodes.
    """
    event = "login.second_factor"
    check_throttle(ctx, user, event)
    if totp.looks_like_code(code):
        result = totp.check(ctx.keyring, user, code, ctx.now)
        if result is not totp.Check.OK:
            count_failure(ctx, user, event, result.value, method="totp")
            raise WrongCode("That code is not right. Check your app and type the newest code.")
        record(ctx, user, event, method="totp")
        throttle.register_success(ctx.store, throttle_key(user))
        return CodeUse("totp")
    if recovery_codes.use(ctx.keyring, user, code, ctx.now):
        left = recovery_codes.remaining(user)
        record(ctx, user, "mfa.recovery.use", remaining=left)
        record(ctx, user, event, method="recovery")
        throttle.register_success(ctx.store, throttle_key(user))
        return CodeUse("recovery", left)
    count_failure(ctx, user, event, "wrong", method="recovery" if code else "none")
    raise WrongCode("That code is not right. Type the 6-digit code or one of your recovery codes.")


# --- TOTP enrolment and removal --------------------------------------------------------------


def begin_totp(ctx: Context, user: User, sealed: str | None) -> totp.Enrolment:
    if totp.factor_of(user) is not None:
        raise ServiceError("An authenticator app is already set up. Remove it first to replace it.")
    return totp.begin(ctx.keyring, user, sealed, ctx.now)


def confirm_totp(
    ctx: Context, user: User, enrolment: totp.Enrolment, code: str
) -> list[str] | None:
    """Activate the app after a correct code; returns new recovery codes on a first factor."""
    event = "mfa.totp.enrol"
    check_throttle(ctx, user, event)
    if totp.factor_of(user) is not None:
        raise ServiceError("An authenticator app is already set up.")
    if not totp.confirm(ctx.keyring, user, enrolment, code, ctx.now):
        count_failure(ctx, user, event, "wrong_code")
        raise WrongCode(
            "That code is not right. Check that the app shows “Bascule” and type its newest code."
        )
    codes = first_factor_codes(ctx, user)
    record(ctx, user, event, recovery_codes_issued=codes is not None)
    throttle.register_success(ctx.store, throttle_key(user))
    return codes


def keep_one_if_required(ctx: Context, user: User, event: str, left: int) -> None:
    """Under an enforced policy the last factor stays until another one replaces it."""
    if left == 0 and mfa_policy.requirement(user, ["pwd"], ctx.now).enforced:
        record(ctx, user, event, "failure", reason="policy_requires_a_factor")
        raise ServiceError(
            "Your organisation requires two-factor authentication. "
            "Add another method before removing this one."
        )


def drop_codes_if_last(user: User) -> int:
    """Recovery codes only stand in for a factor: without any factor they go too."""
    if totp.factor_of(user) is None and not webauthn_service.credentials_of(user):
        return recovery_codes.clear(user)
    return 0


def remove_totp(ctx: Context, user: User, auth_time: float | None) -> None:
    event = "mfa.totp.remove"
    require_recent_audited(ctx, user, event, auth_time)
    if totp.factor_of(user) is None:
        raise NotFound("No authenticator app is set up.")
    keep_one_if_required(ctx, user, event, len(webauthn_service.credentials_of(user)))
    totp.remove(user)
    db.session.flush()
    dropped = drop_codes_if_last(user)
    record(ctx, user, event, recovery_codes_dropped=dropped)


def require_recent_audited(ctx: Context, user: User, event: str, auth_time: float | None) -> None:
    try:
        require_recent(auth_time, ctx.now)
    except ReauthRequired:
        record(ctx, user, event, "failure", reason="reauthentication_required")
        raise


# --- recovery codes --------------------------------------------------------------------------


def regenerate_recovery_codes(ctx: Context, user: User, auth_time: float | None) -> list[str]:
    """A new set of ten; every earlier code stops working at once."""
    event = "mfa.recovery.regenerate"
    require_recent_audited(ctx, user, event, auth_time)
    if not status(user).enabled:
        raise ServiceError("Set up an authenticator app or a security key first.")
    old = recovery_codes.remaining(user)
    codes = recovery_codes.generate(ctx.keyring, user, ctx.now)
    record(ctx, user, event, unused_codes_invalidated=old)
    return codes


# --- administration --------------------------------------------------------------------------


def clear_factors(user: User) -> dict[str, int]:
    """Delete every factor and code of ``user``; returns what was removed. The caller commits."""
    removed = {
        "totp": int(totp.remove(user)),
        "security_keys": 0,
        "recovery_codes": recovery_codes.clear(user),
    }
    for credential in webauthn_service.credentials_of(user):
        db.session.delete(credential)
        removed["security_keys"] += 1
    return removed


def reset_factors(principal: Principal, ctx: credentials.Context, member_id: int) -> dict[str, int]:
    """An admin clears a member's second factors (lost phone and codes); audited.

    Needs ``members.manage`` and control of the member (every permission they hold), so an
    admin cannot strip an owner's factors and then phish the owner's password alone.
    """
    member = members.get_member(principal, member_id)
    authz.require_grantable(principal, member.role.permissions)
    removed = clear_factors(member.user)
    audit.record(
        "mfa.reset",
        actor=principal.actor,
        org_id=principal.org.id,
        target=member.user.email,
        origin=ctx.origin,
        details=removed,
        now=ctx.now,
    )
    return removed
