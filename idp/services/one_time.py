"""Single-use tokens for links (password reset, invitation), kept in the shared store.

The link carries a random token; the store keeps only its hash, so reading the store gives no
usable link. ``consume`` takes the entry atomically: a link works once, even when two requests
race. Each entry holds its own expiry time, checked against the clock the caller passes (as
sessions and lockouts are); the store's TTL only cleans up.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from idp.common.store import Store

PREFIX = "once:"


def _key(kind: str, token: str) -> str:
    return f"{PREFIX}{kind}:{hashlib.sha256(token.encode('utf-8', 'replace')).hexdigest()}"


def issue(store: Store, kind: str, payload: dict[str, Any], ttl: int, now: float) -> str:
    token = secrets.token_urlsafe(32)
    entry = {"expires": now + ttl, "payload": payload}
    store.put(_key(kind, token), json.dumps(entry), ttl)
    return token


def peek(store: Store, kind: str, token: str, now: float) -> dict[str, Any] | None:
    """The payload if the token is live, without using it up (to show the form)."""
    raw = store.get(_key(kind, token)) if 0 < len(token) <= 128 else None
    return _live(raw, now)


def consume(store: Store, kind: str, token: str, now: float) -> dict[str, Any] | None:
    """The payload if the token is live, using it up; an expired token is removed all the same."""
    raw = store.take(_key(kind, token)) if 0 < len(token) <= 128 else None
    return _live(raw, now)


def _live(raw: str | None, now: float) -> dict[str, Any] | None:
    if not raw:
        return None
    entry = json.loads(raw)
    if now >= entry["expires"]:
        return None
    payload: dict[str, Any] = entry["payload"]
    return payload
