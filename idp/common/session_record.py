"""One IdP session as the shared store keeps it, and the rule for when it has ended.

Shared by the IdP (which writes sessions) and the gateway (which checks on every request that
the IdP session behind its own is still alive), so it imports nothing but the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SESSION_PREFIX = "sess:"
# The __Host- prefix makes the browser refuse the cookie unless it is Secure, has Path=/ and no
# Domain: no subdomain or plain-http page can plant or read it. Plain http (development) cannot.
COOKIE_NAME, DEV_COOKIE_NAME = "__Host-bascule_session", "bascule_session"


@dataclass(frozen=True)
class Limits:
    idle_seconds: int
    absolute_seconds: int


@dataclass
class SessionRecord:
    """What the store keeps for one browser session."""

    created: float
    last_seen: float
    ip: str | None = None
    user_agent: str | None = None
    uid: str | None = None
    org_id: str | None = None
    auth_time: float | None = None
    amr: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    # SHA-256 of the cookie's secret half; a new secret (rotation) keeps the session's id.
    secret_hash: str | None = None
    # Tighter limits set by the organisation at sign-in (None: the instance's).
    idle_seconds: int | None = None
    absolute_seconds: int | None = None

    def limits(self, instance: Limits) -> Limits:
        """The limits in force: the instance's, tightened by the session's own."""
        return Limits(
            min(instance.idle_seconds, self.idle_seconds or instance.idle_seconds),
            min(instance.absolute_seconds, self.absolute_seconds or instance.absolute_seconds),
        )

    def expired(self, now: float, instance: Limits) -> bool:
        limits = self.limits(instance)
        return (
            now - self.last_seen > limits.idle_seconds
            or now - self.created > limits.absolute_seconds
        )

    def ttl(self, now: float, instance: Limits) -> float:
        limits = self.limits(instance)
        return max(
            1.0,
            min(self.last_seen + limits.idle_seconds, self.created + limits.absolute_seconds) - now,
        )
