"""Single-use tokens for links (password reset, invitation), kept in the shared store.

The link carries a random token; the store keeps only its hash, so reading the store gives no
usable link. ``consume`` takes the entry atomically: a link works once, even when two requests
race.
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


def issue(store: Store, kind: str, payload: dict[str, Any], ttl: int) -> str:
    token = secrets.token_urlsafe(32)
    store.set(_key(kind, token), json.dumps(payload), ttl)
    return token


def peek(store: Store, kind: str, token: str) -> dict[str, Any] | None:
    """The payload if the token is live, without using it up (to show the form)."""
    raw = store.get(_key(kind, token)) if 0 < len(token) <= 128 else None
    return json.loads(raw) if raw else None


def consume(store: Store, kind: str, token: str) -> dict[str, Any] | None:
    raw = store.take(_key(kind, token)) if 0 < len(token) <= 128 else None
    return json.loads(raw) if raw else None
