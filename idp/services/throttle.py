"""Failed sign-in counting, lockout and backoff, per account and per client IP.

Per account: after ``max_failures`` consecutive failures the account is locked for
``lockout_seconds``; each further failure after a lock doubles the next lock (capped at an
hour). The key is a hash of the submitted email, so addresses that have no account lock
exactly like real ones: the lockout cannot be used to find out who has an account.

Per IP: ``ip_max_failures`` failures within the window block that address for the rest of the
window, which slows password spraying across many accounts.

Locks hold their end time and are checked against the injected clock; the store's expiry only
cleans up.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from idp.common.store import Store

MAX_LOCK_SECONDS = 3600
FAILURE_MEMORY_SECONDS = 24 * 3600
IP_WINDOW_SECONDS = 15 * 60


@dataclass(frozen=True)
class ThrottlePolicy:
    max_failures: int
    lockout_seconds: int
    ip_max_failures: int


def _account_key(email: str) -> str:
    return hashlib.sha256(email.encode("utf-8", "replace")).hexdigest()


def retry_after(store: Store, email: str, ip: str | None, now: float) -> int:
    """Seconds until this email (and this IP) may try again; 0 when not locked."""
    keys = [f"lock:acct:{_account_key(email)}"]
    if ip:
        keys.append(f"lock:ip:{ip}")
    until = max((float(v) for v in store.get_many(keys) if v), default=0.0)
    return max(0, math.ceil(until - now))


def register_failure(
    store: Store, email: str, ip: str | None, now: float, policy: ThrottlePolicy
) -> int:
    """Count a failure; lock when a threshold is reached. Returns the new lock's length or 0."""
    account = _account_key(email)
    failures = store.incr(f"fail:acct:{account}", FAILURE_MEMORY_SECONDS)
    locked_for = 0
    if failures >= policy.max_failures:
        doublings = failures - policy.max_failures
        locked_for = min(MAX_LOCK_SECONDS, policy.lockout_seconds * 2 ** min(doublings, 20))
        store.put(f"lock:acct:{account}", str(now + locked_for), locked_for + 60)
    if ip and store.incr(f"fail:ip:{ip}", IP_WINDOW_SECONDS) >= policy.ip_max_failures:
        store.put(f"lock:ip:{ip}", str(now + IP_WINDOW_SECONDS), IP_WINDOW_SECONDS + 60)
        locked_for = max(locked_for, IP_WINDOW_SECONDS)
    return locked_for


def register_success(store: Store, email: str) -> None:
    account = _account_key(email)
    store.delete(f"fail:acct:{account}", f"lock:acct:{account}")
