"""Password sign-in: throttle, verify, audit; the same answer for every kind of failure.

An unknown email, a wrong password, a disabled account and an account without a password all
come back as ``INVALID`` after the same bcrypt work (a dummy hash stands in when there is no
real one), so neither the answer nor its timing says whether an account exists. The audit log
records the real reason for the operator.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from idp.common import metrics
from idp.common.store import Store
from idp.extensions import db
from idp.models import User
from idp.services import audit, passwords, throttle, users
from idp.services.audit import Actor, Origin
from idp.services.saml import enforcement
from idp.services.throttle import ThrottlePolicy


class Result(enum.Enum):
    OK = "ok"
    INVALID = "invalid"
    LOCKED = "locked"
    SSO_REQUIRED = "sso_required"


@dataclass(frozen=True)
class Attempt:
    result: Result
    user: User | None = None
    retry_after: int = 0
    sso_connection: str | None = None  # with SSO_REQUIRED: the connection's slug


def password_sign_in(
    email: str,
    password: str,
    *,
    store: Store,
    policy: ThrottlePolicy,
    rounds: int,
    origin: Origin,
    now: float,
) -> Attempt:
    email = users.normalise_email(email)
    wait = throttle.retry_after(store, email, origin.ip, now)
    if wait:
        audit.record(
            "login.refused_locked",
            outcome="failure",
            actor=Actor(email=email[:254]),
            origin=origin,
            details={"retry_after": wait},
            now=now,
        )
        metrics.SIGN_INS.labels("locked").inc()
        return Attempt(Result.LOCKED, retry_after=wait)

    user = users.find_by_email(email) if users.valid_email(email) else None
    reason = _check(user, password, rounds)
    enforced = enforcement.enforced_connection(email) if users.valid_email(email) else None
    break_glass = enforced is not None and enforcement.break_glass_allowed(enforced, user)
    if reason is None and user is not None and (enforced is None or break_glass):
        throttle.register_success(store, email)
        if passwords.needs_rehash(user.password_hash or "", rounds):
            user.password_hash = passwords.hash_password(password, rounds)
        actor = Actor(user.id, user.email)
        if enforced is not None:
            audit.record(
                "login.break_glass",
                actor=actor,
                org_id=enforced.org_id,
                target=enforced.slug,
                origin=origin,
                details={"reason": "owner password while SSO is enforced"},
                now=now,
            )
        audit.record("login.success", actor=actor, origin=origin, now=now)
        metrics.SIGN_INS.labels("success").inc()
        return Attempt(Result.OK, user=user)
    if enforced is not None and reason is None:
        return _sso_required(user, email, enforced.slug, enforced.org_id, origin, now)

    db.session.rollback()
    locked_for = throttle.register_failure(store, email, origin.ip, now, policy)
    actor = Actor(user.id if user else None, email[:254])
    audit.record(
        "login.failure",
        outcome="failure",
        actor=actor,
        origin=origin,
        details={"reason": reason},
        now=now,
    )
    if locked_for:
        audit.record(
            "login.lockout",
            outcome="failure",
            actor=actor,
            origin=origin,
            details={"seconds": locked_for},
            now=now,
        )
    metrics.SIGN_INS.labels("failure").inc()
    if enforced is not None:
        return _sso_required(user, email, enforced.slug, enforced.org_id, origin, now)
    return Attempt(Result.INVALID)


def _sso_required(
    user: User | None, email: str, slug: str, org_id: str, origin: Origin, now: float
) -> Attempt:
    """Refuse a password for an address whose organisation signs in with SSO; audited."""
    db.session.rollback()
    audit.record(
        "login.sso_required",
        outcome="failure",
        actor=Actor(user.id if user else None, email[:254]),
        org_id=org_id,
        target=slug,
        origin=origin,
        now=now,
    )
    metrics.SIGN_INS.labels("sso_required").inc()
    return Attempt(Result.SSO_REQUIRED, sso_connection=slug)


def _check(user: User | None, password: str, rounds: int) -> str | None:
    """None when the password is right for an active account, else the reason (for the log)."""
    if len(password) > passwords.MAX_LENGTH:
        return "password_too_long"
    if user is None or user.password_hash is None:
        passwords.verify_dummy(password, rounds)
        return "unknown_user" if user is None else "no_password"
    if not passwords.verify_password(password, user.password_hash):
        return "bad_password"
    if not user.is_active:
        return "disabled"
    return None
