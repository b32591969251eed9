"""Password hashing and the password policy.

Hashing: bcrypt reads only the first 72 bytes of its input, so two long passwords sharing a
72-byte prefix would collide and the rest of a passphrase would count for nothing. We never
truncate: the password (NFKC-normalised, UTF-8) is first reduced with HMAC-SHA256 keyed by the
bcrypt salt, base64-encoded (44 bytes, no NUL), and that is what bcrypt hashes. Keying the
pre-hash with the per-hash salt stops "password shucking" (testing leaked unsalted SHA-256
hashes against our bcrypt hashes). The stored value is an ordinary ``$2b$<cost>$`` bcrypt hash.

Policy: at least ``min_length`` characters, at most ``MAX_LENGTH``; a zxcvbn score of at least
3 computed with the user's own words (email, name, organisation); not one of the last
``HISTORY_DEPTH`` passwords.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache

import bcrypt
from zxcvbn import zxcvbn

MAX_LENGTH = 1024
MIN_SCORE = 3
HISTORY_DEPTH = 5
# zxcvbn raises on inputs over 72 characters; a longer password is scored on its first 72,
# which a random tail can only make stronger.
ZXCVBN_MAX = 72
SALT_LENGTH = 29  # "$2b$" + 2-digit cost + "$" + 22 characters of salt


@dataclass(frozen=True)
class PolicyViolation:
    """Why a password was refused, and what would help: shown to the person choosing it."""

    reason: str
    suggestions: list[str] = field(default_factory=list)


def normalise(password: str) -> bytes:
    """One byte string per password, however the keyboard composed its characters."""
    return unicodedata.normalize("NFKC", password).encode("utf-8")


def _prehash(password: str, salt: bytes) -> bytes:
    digest = hmac.new(salt, normalise(password), hashlib.sha256).digest()
    return base64.b64encode(digest)


def hash_password(password: str, rounds: int) -> str:
    salt = bcrypt.gensalt(rounds)
    return bcrypt.hashpw(_prehash(password, salt), salt).decode("ascii")


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a stored hash; False for anything malformed."""
    encoded = stored.encode("ascii")
    try:
        return bcrypt.checkpw(_prehash(password, encoded[:SALT_LENGTH]), encoded)
    except ValueError:
        return False


@cache
def _dummy_hash(rounds: int) -> str:
    return hash_password("dummy password for timing equality", rounds)


def verify_dummy(password: str, rounds: int) -> None:
    """Spend the time of a real check, so an unknown account answers as slowly as a known one."""
    verify_password(password, _dummy_hash(rounds))


def cost_of(stored: str) -> int:
    return int(stored.split("$")[2])


def needs_rehash(stored: str, rounds: int) -> bool:
    return cost_of(stored) != rounds


def check_policy(
    password: str,
    *,
    min_length: int,
    user_inputs: Iterable[str] = (),
    previous_hashes: Iterable[str] = (),
) -> PolicyViolation | None:
    """The first reason ``password`` is not acceptable, or None when it is."""
    length = len(unicodedata.normalize("NFKC", password))
    if length < min_length:
        return PolicyViolation(
            f"Use at least {min_length} characters (this one has {length}).",
            ["A few unrelated words make a long password that is easy to remember."],
        )
    if length > MAX_LENGTH:
        return PolicyViolation(f"Use at most {MAX_LENGTH} characters.")
    words = _user_words(user_inputs)
    result = zxcvbn(password[:ZXCVBN_MAX], user_inputs=words)
    if result["score"] < MIN_SCORE:
        feedback = result["feedback"]
        reason = feedback.get("warning") or "This password is too easy to guess."
        return PolicyViolation(reason, list(feedback.get("suggestions") or []))
    if words and _score(_without(password, words)) < MIN_SCORE:
        # zxcvbn ranks the user's words as guessable but still scores "janedoe-acme-2026" as
        # strong; what remains without them must stand on its own.
        return PolicyViolation(
            "This password is mostly your name, email or organisation.",
            ["Add a few unrelated words instead."],
        )
    if any(verify_password(password, old) for old in previous_hashes):
        return PolicyViolation(
            f"Choose a password you have not used for your last {HISTORY_DEPTH} passwords."
        )
    return None


def _score(password: str) -> int:
    if not password:  # zxcvbn raises on "", e.g. when the password was only the user's words
        return 0
    return int(zxcvbn(password[:ZXCVBN_MAX])["score"])


def _without(password: str, words: list[str]) -> str:
    """The password with every one of the user's words taken out."""
    remainder = password.lower()
    for word in sorted(words, key=len, reverse=True):
        remainder = remainder.replace(word, "")
    return remainder


def _user_words(inputs: Iterable[str]) -> list[str]:
    """The user's own words, split so that jane.doe@acme.test also yields jane and acme."""
    words: set[str] = set()
    for text in inputs:
        if not text:
            continue
        lowered = text.lower()
        words.add(lowered)
        for separator in "@.-_+ ":
            lowered = lowered.replace(separator, " ")
        words.update(part for part in lowered.split() if len(part) >= 3)
    words.discard("")
    return sorted(words)
