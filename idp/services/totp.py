"""TOTP (RFC 6238: SHA-1, 6 digits, 30-second steps) behind plain functions of our own.

pyotp computes the codes; what pyotp leaves open is closed here: its ``verify()`` accepts the
same code again for as long as it is valid, so we record the newest step accepted per user and
refuse that step and any older one (a code seen over a shoulder or phished in real time cannot
be used a second time). Seeds are 160 bits (pyotp >= 2.10 refuses short ones) and are stored
only sealed with AES-256-GCM, bound to the user they belong to.
"""

from __future__ import annotations

import enum
import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pyotp
from sqlalchemy import or_, select, update

from idp.common.sealing import Keyring, SealingError
from idp.extensions import db
from idp.models import TotpFactor, User

STEP_SECONDS = 30
DIGITS = 6
# One step either side absorbs phone clocks a little off and a code typed as it rolls over;
# wider windows only give a guesser more valid codes per attempt.
WINDOW_STEPS = 1
SECRET_CHARS = 32  # base32: 160 bits, the RFC 4226 recommendation
PENDING_SECONDS = 3600  # how long a shown (not yet confirmed) QR code stays valid
_CODE = re.compile(r"^[0-9]{6}$")  # not \d, which also matches other scripts' digits


class Check(enum.Enum):
    OK = "ok"
    WRONG = "wrong"
    REPLAY = "replay"  # a right code for a step already used


@dataclass(frozen=True)
class Enrolment:
    """A seed being set up: the clear secret to show, and its sealed form to keep meanwhile."""

    secret: str
    sealed: str


def normalise(code: str) -> str:
    """What people type: spaces and dashes from apps that group digits are dropped."""
    return code.replace(" ", "").replace("-", "").strip()


def looks_like_code(code: str) -> bool:
    return bool(_CODE.match(normalise(code)))


def step_at(now: float) -> int:
    return int(now // STEP_SECONDS)


def code_at(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).generate_otp(step)


def matching_step(secret: str, code: str, now: float) -> int | None:
    """The time step ``code`` is valid for within the window, or None.

    Every candidate is compared in constant time and all are tried, so the timing does not
    tell which step (if any) matched.
    """
    code = normalise(code)
    if not _CODE.match(code):
        return None
    current = step_at(now)
    found = None
    for step in range(current - WINDOW_STEPS, current + WINDOW_STEPS + 1):
        if hmac.compare_digest(code_at(secret, step), code):
            found = step
    return found


def issuer_label(issuer_url: str) -> str:
    """The name the authenticator app shows: the product and this instance's host."""
    return f"Bascule ({urlsplit(issuer_url).hostname})"


def provisioning_uri(secret: str, account: str, issuer_url: str) -> str:
    """The ``otpauth://`` URI the QR code holds and phones open with a tap."""
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    return totp.provisioning_uri(name=account, issuer_name=issuer_label(issuer_url))


def _purpose(user: User, pending: bool = False) -> str:
    # Binding the user id as associated data means a sealed seed copied into another user's
    # row (by someone who can write the database) does not open there.
    return f"totp{'-pending' if pending else ''}:{user.id}"


# --- enrolment and use (the database side) ---------------------------------------------------


def factor_of(user: User) -> TotpFactor | None:
    return db.session.scalar(select(TotpFactor).where(TotpFactor.user_id == user.id))


def begin(keyring: Keyring, user: User, sealed: str | None, now: float) -> Enrolment:
    """The seed to show on the enrolment page: the one already shown (``sealed``, kept in the
    server session) while it is fresh, so a reload does not break an app that scanned it."""
    if sealed:
        try:
            pending = json.loads(keyring.unseal(sealed, _purpose(user, pending=True)))
            if now - float(pending["created"]) < PENDING_SECONDS:
                return Enrolment(str(pending["secret"]), sealed)
        except (SealingError, ValueError, KeyError, TypeError):
            pass
    secret = pyotp.random_base32(SECRET_CHARS)
    body = json.dumps({"secret": secret, "created": now}).encode()
    return Enrolment(secret, keyring.seal(body, _purpose(user, pending=True)))


def confirm(keyring: Keyring, user: User, enrolment: Enrolment, code: str, now: float) -> bool:
    """Store the seed once a code from the app proves it was copied right. The caller commits.

    The confirming step counts as used, so the code typed here cannot sign in a second time.
    """
    step = matching_step(enrolment.secret, code, now)
    if step is None:
        return False
    factor = factor_of(user)
    if factor is None:
        factor = TotpFactor(user_id=user.id)
        db.session.add(factor)
    factor.secret_sealed = keyring.seal(enrolment.secret.encode(), _purpose(user))
    factor.last_used_step = step
    factor.created_at = datetime.fromtimestamp(now, UTC)
    factor.last_used_at = None
    return True


def secret_of(keyring: Keyring, user: User, factor: TotpFactor) -> str:
    return keyring.unseal(factor.secret_sealed, _purpose(user)).decode()


def check(keyring: Keyring, user: User, code: str, now: float) -> Check:
    """Verify a sign-in code and use its step up. The caller commits (or rolls back).

    The step is claimed with one conditional UPDATE (``last_used_step < step``): two requests
    racing with the same code both match, but only one of them changes the row.
    """
    factor = factor_of(user)
    if factor is None:
        return Check.WRONG
    step = matching_step(secret_of(keyring, user, factor), code, now)
    if step is None:
        return Check.WRONG
    claimed = db.session.execute(
        update(TotpFactor)
        .where(
            TotpFactor.id == factor.id,
            or_(TotpFactor.last_used_step.is_(None), TotpFactor.last_used_step < step),
        )
        .values(last_used_step=step, last_used_at=datetime.fromtimestamp(now, UTC))
        .execution_options(synchronize_session="fetch")
    )
    return Check.OK if claimed.rowcount == 1 else Check.REPLAY  # type: ignore[attr-defined]


def remove(user: User) -> bool:
    """Delete the user's seed; False when there was none. The caller commits."""
    factor = factor_of(user)
    if factor is None:
        return False
    db.session.delete(factor)
    return True
