"""Accounts: creation, passwords, enabling and disabling."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy import select

from idp.common.store import Store
from idp.extensions import db
from idp.models import Membership, PasswordHistory, User
from idp.services import audit, passwords, sessions
from idp.services.audit import Actor, Origin
from idp.services.errors import NotFound, ServiceError
from idp.services.passwords import PolicyViolation

# Deliberately simple: one @, no spaces or control characters, a dot in the domain.
# Deliverability is proven by the invitation or reset mail, not by a regular expression.
# (A NUL would also make PostgreSQL refuse the lookup with an error instead of "no such user".)
# The header specials are refused too: "a,b@c.d" is two recipients in a To header, and
# "a@[b.c" crashes Python's mail header parser, so an invitation to it would be a 500.
_ATOM = r"[^@\s\x00-\x1f\x7f()<>\[\]:;,\"\\]"
_EMAIL = re.compile(rf"^{_ATOM}{{1,64}}@{_ATOM}+\.{_ATOM}+$")
MAX_EMAIL = 254


class PasswordRejected(ServiceError):
    def __init__(self, violation: PolicyViolation) -> None:
        super().__init__(violation.reason)
        self.violation = violation


def normalise_email(email: str) -> str:
    return email.strip().lower()


def valid_email(email: str) -> bool:
    return len(email) <= MAX_EMAIL and bool(_EMAIL.match(email))


def find_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == normalise_email(email)))


def get_by_email(email: str) -> User:
    user = find_by_email(email)
    if user is None:
        raise NotFound(f"no user with email {normalise_email(email)}")
    return user


def create_user(email: str, name: str = "") -> User:
    """A new account with no password yet (it is set through an invitation, or by the caller)."""
    email = normalise_email(email)
    if not valid_email(email):
        raise ServiceError(f"{email!r} is not an email address")
    if find_by_email(email) is not None:
        raise ServiceError(f"a user with email {email} already exists")
    user = User(email=email, name=name.strip()[:200])
    db.session.add(user)
    db.session.flush()
    return user


def user_words(user: User) -> list[str]:
    """What the password policy treats as guessable for this user."""
    words = [user.email, user.name]
    words += [m.org.slug for m in user.memberships] + [m.org.name for m in user.memberships]
    return words


def previous_hashes(user: User) -> list[str]:
    history = db.session.scalars(
        select(PasswordHistory.password_hash)
        .where(PasswordHistory.user_id == user.id)
        .order_by(PasswordHistory.id.desc())
        .limit(passwords.HISTORY_DEPTH)
    ).all()
    return list(history)


def check_new_password(user: User, password: str, min_length: int) -> PolicyViolation | None:
    """The policy for this user: the strictest minimum length of the instance and of every
    organisation the user belongs to."""
    org_minimums = [m.org.password_min_length or 0 for m in user.memberships]
    return passwords.check_policy(
        password,
        min_length=max([min_length, *org_minimums]),
        user_inputs=user_words(user),
        previous_hashes=previous_hashes(user),
    )


def set_password(user: User, password: str, *, rounds: int) -> None:
    """Hash a password the policy has accepted and remember it in the history.

    The caller checks the policy first (``check_new_password``) and commits.
    """
    user.password_hash = passwords.hash_password(password, rounds)
    user.password_changed_at = datetime.now(UTC)
    db.session.add(PasswordHistory(user_id=user.id, password_hash=user.password_hash))
    _trim_history(user)


def _trim_history(user: User) -> None:
    keep = select(PasswordHistory.id).where(PasswordHistory.user_id == user.id)
    keep = keep.order_by(PasswordHistory.id.desc()).limit(passwords.HISTORY_DEPTH)
    db.session.flush()
    stale = db.session.scalars(
        select(PasswordHistory).where(
            PasswordHistory.user_id == user.id, PasswordHistory.id.not_in(keep.scalar_subquery())
        )
    ).all()
    for row in stale:
        db.session.delete(row)


def default_membership(user: User) -> Membership | None:
    """The organisation a fresh session starts in: the oldest membership."""
    return min(user.memberships, key=lambda m: m.id, default=None)


def default_org_id(user_id: str) -> str | None:
    """The org of ``default_membership``, read as one column.

    Sign-in needs only this id; ``user.memberships`` would load every membership with its org
    and role (joined) and then the role's grants (one more query) on every sign-in.
    """
    return db.session.scalar(
        select(Membership.org_id)
        .where(Membership.user_id == user_id)
        .order_by(Membership.id)
        .limit(1)
    )


def set_active(user: User, active: bool, *, store: Store, actor: Actor, origin: Origin) -> int:
    """Disable (ending every session and every OIDC grant at once) or re-enable an account;
    audited."""
    ended = 0 if active else sessions.revoke_all(store, user.id)
    if not active:
        from idp.services.oidc import tokens  # the provider builds on accounts, not the reverse

        tokens.revoke_grants_of_user(user.id, "user_disabled", origin)
    user.is_active = active
    audit.record(
        "user.enable" if active else "user.disable",
        actor=actor,
        target=user.email,
        origin=origin,
        details={"sessions_revoked": ended},
    )
    return ended
