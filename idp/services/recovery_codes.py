"""Recovery codes: ten single-use codes for the day the phone or the key is lost.

Stored as HMAC-SHA256 under a key derived (HKDF) from the instance's data key, not bcrypt.
Why: the codes are random (12 characters from 31, about 59 bits), not chosen by people, so
there is no dictionary to slow down; a keyed hash makes a stolen database useless on its own
(without the data key there is nothing to test guesses against), and it lets us find a code
by an indexed lookup instead of running bcrypt against every one of ten hashes on each try,
which would be seconds of CPU per attempt handed to anyone who can post the form. Online
guessing is limited by the second-factor throttle. Each row names the data key its HMAC key
came from, so codes keep working after ``bascule keys rotate --data``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete, func, select, update

from idp.common.sealing import Keyring
from idp.extensions import db
from idp.models import RecoveryCode, User

COUNT = 10
LENGTH = 12
# No 0/o, 1/l/i: codes are read off paper and typed by hand.
ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
GROUP = 4


def _hmac_key(keyring: Keyring, key_id: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"bascule recovery codes"
    ).derive(keyring.keys[key_id])


def _digest(key: bytes, code: str) -> str:
    return hmac.new(key, code.encode(), hashlib.sha256).hexdigest()


def normalise(code: str) -> str:
    return code.strip().lower().replace("-", "").replace(" ", "")


def looks_like_code(code: str) -> bool:
    text = normalise(code)
    return len(text) == LENGTH and all(ch in ALPHABET for ch in text)


def display(code: str) -> str:
    """``abcd-efgh-jkmn``: groups of four are easier to copy without mistakes."""
    return "-".join(code[i : i + GROUP] for i in range(0, len(code), GROUP))


def generate(keyring: Keyring, user: User, now: float) -> list[str]:
    """A fresh set of codes, replacing every earlier one (used or not). The caller commits.

    The clear codes are returned to be shown once; only their keyed hashes are stored.
    """
    clear(user)
    key = _hmac_key(keyring, keyring.current)
    created = datetime.fromtimestamp(now, UTC)
    codes = ["".join(secrets.choice(ALPHABET) for _ in range(LENGTH)) for _ in range(COUNT)]
    for code in codes:
        db.session.add(
            RecoveryCode(
                user_id=user.id,
                key_id=keyring.current,
                code_hash=_digest(key, code),
                created_at=created,
            )
        )
    return [display(code) for code in codes]


def use(keyring: Keyring, user: User, code: str, now: float) -> bool:
    """Spend one code: True if it was an unused code of this user. The caller commits.

    The conditional UPDATE (``used_at IS NULL``) lets only one of two racing requests with the
    same code through.
    """
    if not looks_like_code(code):
        return False
    text = normalise(code)
    key_ids = db.session.scalars(
        select(RecoveryCode.key_id)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        .distinct()
    ).all()
    digests = [_digest(_hmac_key(keyring, k), text) for k in key_ids if k in keyring.keys]
    if not digests:
        return False
    row_id = db.session.scalar(
        select(RecoveryCode.id).where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash.in_(digests),
            RecoveryCode.used_at.is_(None),
        )
    )
    if row_id is None:
        return False
    spent = db.session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.id == row_id, RecoveryCode.used_at.is_(None))
        .values(used_at=datetime.fromtimestamp(now, UTC))
        .execution_options(synchronize_session="fetch")
    )
    return spent.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def remaining(user: User) -> int:
    return (
        db.session.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        )
        or 0
    )


def clear(user: User) -> int:
    """Delete all of the user's codes; returns how many were unused. The caller commits."""
    unused = remaining(user)
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    return unused
