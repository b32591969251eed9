"""Setting and changing passwords: change, reset by mailed link, and invitations.

Every completed change revokes the user's other sessions, so a thief holding an old session
loses it when the owner resets or changes the password.
"""

from __future__ import annotations

from dataclasses import dataclass

from idp.common.store import Store
from idp.config import Settings
from idp.extensions import db
from idp.models import Organisation, User
from idp.services import audit, one_time, passwords, sessions, throttle, users
from idp.services.audit import Actor, Origin
from idp.services.errors import ServiceError
from idp.services.mail import Mailer
from idp.services.throttle import ThrottlePolicy

RESET_TTL_SECONDS = 30 * 60
INVITE_TTL_SECONDS = 7 * 24 * 3600
RESET_REQUESTS_PER_IP = 10
RESET_WINDOW_SECONDS = 15 * 60


class LinkExpired(ServiceError):
    """The link was used already, has expired, or never existed."""


class TooManyAttempts(ServiceError):
    """The account (or the client's address) is locked after failed passwords: wait, retry."""

    def __init__(self, retry_after: int) -> None:
        minutes = max(1, round(retry_after / 60))
        super().__init__(f"Too many wrong passwords. Try again in about {minutes} minute(s).")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Context:
    """What these operations need from the running instance."""

    settings: Settings
    store: Store
    mailer: Mailer
    origin: Origin
    now: float


def change_password(
    ctx: Context, user: User, current: str, new: str, keep_session: str | None
) -> None:
    """Check the current password, apply the policy, revoke the other sessions."""
    # The sign-in lockout holds here too, or a stolen session could go on guessing the password.
    wait = throttle.retry_after(ctx.store, user.email, ctx.origin.ip, ctx.now)
    if wait:
        audit.record(
            "password.change",
            outcome="failure",
            actor=Actor(user.id, user.email),
            origin=ctx.origin,
            details={"reason": "locked", "retry_after": wait},
            now=ctx.now,
        )
        raise TooManyAttempts(wait)
    if user.password_hash is None or not passwords.verify_password(current, user.password_hash):
        s = ctx.settings
        policy = ThrottlePolicy(s.login_max_failures, s.login_lockout_seconds, s.ip_max_failures)
        throttle.register_failure(ctx.store, user.email, ctx.origin.ip, ctx.now, policy)
        audit.record(
            "password.change",
            outcome="failure",
            actor=Actor(user.id, user.email),
            origin=ctx.origin,
            details={"reason": "bad_current_password"},
            now=ctx.now,
        )
        raise ServiceError("Your current password is not right.")
    violation = users.check_new_password(user, new, ctx.settings.password_min_length)
    if violation:
        raise users.PasswordRejected(violation)
    ended = sessions.revoke_all(ctx.store, user.id, keep=keep_session)
    _store_password(ctx, user, new)
    audit.record(
        "password.change",
        actor=Actor(user.id, user.email),
        origin=ctx.origin,
        details={"other_sessions_revoked": ended},
        now=ctx.now,
    )


def _store_password(ctx: Context, user: User, password: str) -> None:
    """Hash and keep a password the policy already accepted (store work is done before this:
    the SQL store must not wait on the ORM's open write transaction)."""
    users.set_password(user, password, rounds=ctx.settings.bcrypt_rounds)


def request_reset(ctx: Context, email: str) -> None:
    """Mail a reset link if the address has an active account; say nothing either way."""
    ip_key = f"reset:ip:{ctx.origin.ip}"
    if ctx.origin.ip and ctx.store.incr(ip_key, RESET_WINDOW_SECONDS) > RESET_REQUESTS_PER_IP:
        audit.record(
            "password.reset_request",
            outcome="failure",
            origin=ctx.origin,
            details={"reason": "rate_limited"},
            now=ctx.now,
        )
        return
    user = users.find_by_email(email) if users.valid_email(users.normalise_email(email)) else None
    if user is None or not user.is_active:
        audit.record(
            "password.reset_request",
            outcome="ignored",
            origin=ctx.origin,
            target=users.normalise_email(email)[:254],
            now=ctx.now,
        )
        return
    token = one_time.issue(ctx.store, "reset", {"uid": user.id}, RESET_TTL_SECONDS, ctx.now)
    link = f"{ctx.settings.issuer}/password/reset/{token}"
    ctx.mailer.send(
        user.email,
        "Reset your Bascule password",
        f"Someone (hopefully you) asked to reset the password for {user.email}.\n\n"
        f"Choose a new password here within 30 minutes:\n{link}\n\n"
        "The link works once. Using it signs you out everywhere.\n"
        "If you did not ask for this, ignore this message: your password stays as it is.\n",
    )
    audit.record(
        "password.reset_request", actor=Actor(user.id, user.email), origin=ctx.origin, now=ctx.now
    )


def invite(
    ctx: Context, user: User, org: Organisation, invited_by: Actor, event: str = "member.invite"
) -> str:
    """Mail (and return) a link with which ``user`` sets a first password.

    ``members.invite`` records the membership itself and passes ``event="invitation.send"``,
    so one invitation is one ``member.invite`` in the log, not two.
    """
    token = one_time.issue(ctx.store, "invite", {"uid": user.id}, INVITE_TTL_SECONDS, ctx.now)
    link = f"{ctx.settings.issuer}/invite/{token}"
    ctx.mailer.send(
        user.email,
        f"You are invited to {org.name} on Bascule",
        f"You have been invited to join {org.name}.\n\n"
        f"Choose your password here within 7 days:\n{link}\n",
    )
    audit.record(
        event,
        actor=invited_by,
        org_id=org.id,
        target=user.email,
        origin=ctx.origin,
        now=ctx.now,
    )
    return link


def link_user(ctx: Context, kind: str, token: str) -> User:
    """The user a live reset or invitation link is for, without using the link up."""
    payload = one_time.peek(ctx.store, kind, token, ctx.now)
    user = db.session.get(User, payload["uid"]) if payload else None
    if user is None or not user.is_active:
        raise LinkExpired("This link has expired or was already used. Ask for a new one.")
    return user


def complete_link(ctx: Context, kind: str, token: str, new_password: str) -> User:
    """Set the password through a link: policy first (a refusal keeps the link), then use it."""
    user = link_user(ctx, kind, token)
    violation = users.check_new_password(user, new_password, ctx.settings.password_min_length)
    if violation:
        raise users.PasswordRejected(violation)
    # None here means another submit of the same link won the race (or it just expired).
    if one_time.consume(ctx.store, kind, token, ctx.now) is None:
        raise LinkExpired("This link has expired or was already used. Ask for a new one.")
    ended = sessions.revoke_all(ctx.store, user.id)
    throttle.register_success(ctx.store, user.email)
    _store_password(ctx, user, new_password)
    event = "password.reset" if kind == "reset" else "invitation.accept"
    audit.record(
        event,
        actor=Actor(user.id, user.email),
        origin=ctx.origin,
        details={"sessions_revoked": ended},
        now=ctx.now,
    )
    return user
