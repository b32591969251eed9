"""The sign-in as an explicit state machine, kept in the server-side session.

After a correct password a user with a second factor is *not* signed in: the session holds a
``Pending`` record (who, which methods are allowed, until when, where to go next) and nothing
else. Every step of the second-factor pages loads it with ``load``, which refuses a missing,
expired or wrong-stage record; ``clear`` is the one way out. Only when the second factor passes
does the view call ``ServerSession.sign_in`` (which rotates the session id).

The record lives in the server-side session (the store), never in the cookie, so the browser
cannot edit it. This module holds the rules only; views read and write the session.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SESSION_KEY = "pending_login"
SECOND_FACTOR = "second_factor"
ENROL = "enrol"
# Five minutes to type a code or touch a key; enrolment (installing an app) takes longer.
TTL_SECONDS = {SECOND_FACTOR: 5 * 60, ENROL: 20 * 60}
# Wrong codes allowed within one pending sign-in; then the password must be typed again.
MAX_FAILURES = 5


@dataclass
class Pending:
    """A sign-in that has passed the password and waits for a second factor (or enrolment)."""

    uid: str
    org_id: str | None
    stage: str
    methods: list[str]
    expires: float
    next_url: str
    amr: list[str] = field(default_factory=lambda: ["pwd"])
    failures: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def start(
    uid: str,
    org_id: str | None,
    stage: str,
    methods: list[str],
    next_url: str,
    now: float,
) -> Pending:
    return Pending(uid, org_id, stage, list(methods), now + TTL_SECONDS[stage], next_url)


def load(raw: Any, stage: str, now: float) -> Pending | None:
    """The pending sign-in if there is one at ``stage`` and it has not expired."""
    if not isinstance(raw, dict):
        return None
    try:
        pending = Pending(**raw)
    except TypeError:
        return None
    if pending.stage != stage or now >= pending.expires:
        return None
    return pending


def record_failure(pending: Pending) -> bool:
    """Count a wrong answer; True when this pending sign-in has used up its tries."""
    pending.failures += 1
    return pending.failures >= MAX_FAILURES
