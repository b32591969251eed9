"""The TOTP wrapper against Debian's oathtool, an implementation independent of pyotp."""

from __future__ import annotations

import pyotp
import pytest

from idp.services import totp
from tests.mfa_support import oathtool

SECRET = pyotp.random_base32(32)


@pytest.mark.parametrize("now", [59, 1_111_111_109, 1_234_567_890, 2_000_000_000, 20_000_000_000])
def test_codes_agree_with_oathtool(now: int) -> None:
    assert totp.code_at(SECRET, totp.step_at(now)) == oathtool(SECRET, now)


def test_window_is_one_step_either_side() -> None:
    now = 1_700_000_000.0
    step = totp.step_at(now)
    for offset in (-1, 0, 1):
        assert totp.matching_step(SECRET, oathtool(SECRET, now + 30 * offset), now) == step + offset
    for offset in (-2, 2):
        code = oathtool(SECRET, now + 30 * offset)
        found = totp.matching_step(SECRET, code, now)
        # A code from two steps away matches only by coincidence with a nearer step's code.
        assert found is None or abs(found - step) <= 1


@pytest.mark.parametrize(
    "typed",
    ["12345", "1234567", "abcdef", "", "\uff11\uff12\uff13\uff14\uff15\uff16", "12345\u00b2"],
)
def test_malformed_codes_never_match(typed: str) -> None:
    assert not totp.looks_like_code(typed)
    assert totp.matching_step(SECRET, typed, 1_700_000_000) is None


def test_spaces_and_dashes_are_ignored() -> None:
    now = 1_700_000_000
    code = oathtool(SECRET, now)
    assert totp.matching_step(SECRET, f" {code[:3]} {code[3:]} ", now) is not None
    assert totp.matching_step(SECRET, f"{code[:3]}-{code[3:]}", now) is not None


def test_secrets_are_160_bits_and_pyotp_accepts_them() -> None:
    from idp.common.sealing import Keyring

    class FakeUser:
        id = "u1"

    ring = Keyring({"k": bytes(32)}, "k")
    enrolment = totp.begin(ring, FakeUser(), None, 1_700_000_000)  # type: ignore[arg-type]
    assert len(enrolment.secret) == 32
    assert enrolment.secret not in enrolment.sealed
    # The sealed form is reused while fresh, so a reload keeps the scanned seed ...
    again = totp.begin(ring, FakeUser(), enrolment.sealed, 1_700_000_100)  # type: ignore[arg-type]
    assert again.secret == enrolment.secret
    # ... but not after an hour, nor for another user.
    late = totp.begin(ring, FakeUser(), enrolment.sealed, 1_700_003_700)  # type: ignore[arg-type]
    assert late.secret != enrolment.secret

    class Other:
        id = "u2"

    stolen = totp.begin(ring, Other(), enrolment.sealed, 1_700_000_100)  # type: ignore[arg-type]
    assert stolen.secret != enrolment.secret
