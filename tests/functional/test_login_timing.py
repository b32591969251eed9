"""An unknown email costs the same bcrypt work as a wrong password (no timing oracle)."""

from __future__ import annotations

import dataclasses
import statistics
import time

import httpx
import pytest

from tests.support import make_user, sign_in

ROUNDS = 10  # ~60 ms per check: large against the noise of a loopback request


def _median_seconds(client: httpx.Client, email: str, tries: int = 5) -> float:
    durations = []
    for n in range(tries):
        start = time.perf_counter()
        response = sign_in(client, email, f"wrong password number {n}")
        durations.append(time.perf_counter() - start)
        assert response.status_code == 401
    return statistics.median(durations)


# The same code runs on every backend: one measurement is enough.
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_unknown_email_takes_as_long_as_a_wrong_password(settings, server, extra_app) -> None:
    slow = dataclasses.replace(settings, bcrypt_rounds=ROUNDS, login_max_failures=100)
    app = extra_app(slow)
    server[1].app = app
    with app.app_context():
        make_user(app)
    with httpx.Client(base_url=server[0], timeout=30) as client:
        _median_seconds(client, "warm@up.test", 1)
        known = _median_seconds(client, "jane@acme.test")
        unknown = _median_seconds(client, "nobody@acme.test")
    # Without the dummy hash an unknown email would answer in a few milliseconds.
    assert unknown > 0.6 * known
    assert known > 0.6 * unknown
