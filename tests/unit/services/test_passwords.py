"""Password hashing and policy, without HTTP."""

from __future__ import annotations

import bcrypt
import pytest

from idp.services import passwords

STRONG = "correct horse battery staple 42"


def test_hash_is_bcrypt_at_the_requested_cost() -> None:
    stored = passwords.hash_password(STRONG, 5)
    assert stored.startswith("$2b$05$") and len(stored) == 60
    assert passwords.cost_of(stored) == 5
    assert passwords.verify_password(STRONG, stored)
    assert not passwords.verify_password(STRONG + "!", stored)
    assert passwords.needs_rehash(stored, 6) and not passwords.needs_rehash(stored, 5)


def test_every_byte_of_a_long_password_counts() -> None:
    """bcrypt alone ignores bytes after the 72nd; our pre-hash must not."""
    prefix = "x7!" * 30  # 90 bytes
    stored = passwords.hash_password(prefix + "tail-one", 4)
    assert passwords.verify_password(prefix + "tail-one", stored)
    assert not passwords.verify_password(prefix + "tail-two", stored)
    # The same two passwords collide under bare bcrypt, which is the hole we close.
    raw = bcrypt.hashpw((prefix + "tail-one").encode()[:72], bcrypt.gensalt(4))
    assert bcrypt.checkpw((prefix + "tail-two").encode()[:72], raw)


def test_passwords_with_nul_and_non_ascii_work() -> None:
    for password in ["nul\x00inside the password!", "ünïcödé päss wörd 🔑🔑"]:
        stored = passwords.hash_password(password, 4)
        assert passwords.verify_password(password, stored)


def test_unicode_is_normalised_before_hashing() -> None:
    composed, decomposed = "caf\u00e9 terrace umbrella", "cafe\u0301 terrace umbrella"
    assert passwords.verify_password(decomposed, passwords.hash_password(composed, 4))


def test_pre_hash_is_keyed_by_the_salt() -> None:
    """Two hashes of one password differ entirely (no shared unsalted SHA-256 to shuck)."""
    a, b = passwords.hash_password(STRONG, 4), passwords.hash_password(STRONG, 4)
    assert a != b
    assert passwords._prehash(STRONG, a.encode()[:29]) != passwords._prehash(
        STRONG, b.encode()[:29]
    )


def test_malformed_stored_hash_is_a_mismatch_not_an_error() -> None:
    assert not passwords.verify_password(STRONG, "not-a-hash")
    assert not passwords.verify_password(STRONG, "")


@pytest.mark.parametrize(
    ("password", "inputs", "reason"),
    [
        ("short1!", [], "at least 12 characters"),
        ("password1234", [], "common"),
        ("qwertyuiopasdf", [], "common"),
        ("janedoe@acme.test", ["janedoe@acme.test"], ""),
        ("acmeacmeacme2026", ["acme"], ""),
    ],
)
def test_policy_refuses_with_a_reason(password: str, inputs: list[str], reason: str) -> None:
    violation = passwords.check_policy(password, min_length=12, user_inputs=inputs)
    assert violation is not None
    assert reason.lower() in violation.reason.lower()
    assert violation.reason


def test_policy_refuses_the_users_own_words_even_when_otherwise_strong() -> None:
    password = "zanzibar-quokka-2031"
    assert passwords.check_policy(password, min_length=12) is None
    violation = passwords.check_policy(
        password, min_length=12, user_inputs=["zanzibar.quokka@acme.test"]
    )
    assert violation is not None


def test_policy_accepts_a_strong_password_and_a_very_long_one() -> None:
    assert passwords.check_policy(STRONG, min_length=12) is None
    long_one = "Tr0ub4dor&3 staple horse " * 20  # 500 characters: zxcvbn sees the first 72
    assert passwords.check_policy(long_one, min_length=12) is None


def test_policy_refuses_over_long_and_recent_passwords() -> None:
    assert passwords.check_policy("a" * 2000, min_length=12) is not None
    history = [passwords.hash_password(STRONG, 4)]
    violation = passwords.check_policy(STRONG, min_length=12, previous_hashes=history)
    assert violation is not None and "last 5" in violation.reason


def test_suggestions_come_with_weak_passwords() -> None:
    violation = passwords.check_policy("aaaaaaaaaaaaaa", min_length=12)
    assert violation is not None and violation.suggestions
