"""Time as a dependency, so expiries, lockouts and TOTP windows are tested without sleeping."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def __call__(self) -> float: ...


def system_clock() -> float:
    """Seconds since the epoch, from the system."""
    return time.time()


class FrozenClock:
    """A clock that moves only when told to: for tests and benchmarks."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
