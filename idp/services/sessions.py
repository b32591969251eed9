"""Server-side sessions in the shared store.

The browser holds ``<id>.<secret>``. The id is the session's public name (the store key, the
OIDC ``sid``, what the sessions page revokes); the record keeps only the secret's SHA-256, so
a copy of the store does not hand out live cookies. Rotation (sign-in, privilege change)
replaces the secret and keeps the id, so applications signed in through this session stay
bound to it; a different user signing in gets a new session altogether. Each record carries
its own creation and last-seen times: the idle and absolute limits are checked on every load
against the clock, and the store's TTL only cleans up.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass

from idp.common.session_record import SESSION_PREFIX, Limits, SessionRecord
from idp.common.store import Store

USER_INDEX_PREFIX = "usess:"
# Writing last-seen on every request would double the store traffic; a minute of slack on a
# 30-minute idle timeout is harmless.
TOUCH_INTERVAL_SECONDS = 60

# Called with (sid, uid) after a session ends, whatever ended it: the OIDC provider sends
# back-channel logouts from here. A listener must not raise.
_end_listeners: list[Callable[[str, str | None], None]] = []


def on_end(listener: Callable[[str, str | None], None]) -> None:
    if listener not in _end_listeners:
        _end_listeners.append(listener)


_TOKEN = re.compile(r"^([0-9a-f]{64})\.([A-Za-z0-9_-]{43})$")


def new_token() -> str:
    """A new session: a new id and a new secret."""
    return f"{secrets.token_hex(32)}.{secrets.token_urlsafe(32)}"


def rotated(token: str) -> str:
    """The same session under a new secret: the old cookie value stops working."""
    return f"{session_id(token)}.{secrets.token_urlsafe(32)}"


def session_id(token: str) -> str:
    return token.partition(".")[0]


def _secret_hash(token: str) -> str:
    return hashlib.sha256(token.partition(".")[2].encode()).hexdigest()


def load(store: Store, token: str, now: float, limits: Limits) -> SessionRecord | None:
    """The live session for a cookie token, or None if unknown, expired, revoked or a
    superseded secret."""
    if not _TOKEN.match(token or ""):
        return None
    raw = store.get(SESSION_PREFIX + session_id(token))
    if raw is None:
        return None
    record = SessionRecord(**json.loads(raw))
    if not hmac.compare_digest(record.secret_hash or "", _secret_hash(token)):
        return None
    if record.expired(now, limits):
        destroy(store, session_id(token), record.uid)
        return None
    return record


def save(
    store: Store, token: str, record: SessionRecord, now: float, limits: Limits, *, new: bool
) -> bool:
    """Write the session; an existing one only while it still exists, so a write racing a
    revocation cannot bring the session back. False if it was gone."""
    sid = session_id(token)
    record.secret_hash = _secret_hash(token)
    key, value, ttl = SESSION_PREFIX + sid, json.dumps(asdict(record)), record.ttl(now, limits)
    if new:
        store.put(key, value, ttl)
    elif not store.replace(key, value, ttl):
        return False
    if record.uid:
        store.sadd(USER_INDEX_PREFIX + record.uid, sid, limits.absolute_seconds)
    return True


def destroy(store: Store, sid: str, uid: str | None) -> None:
    store.delete(SESSION_PREFIX + sid)
    if uid:
        store.srem(USER_INDEX_PREFIX + uid, sid)
        for listener in _end_listeners:
            listener(sid, uid)


@dataclass(frozen=True)
class SessionInfo:
    """One of a user's sessions, as the sessions page shows it."""

    id: str
    created: float
    last_seen: float
    auth_time: float | None
    ip: str | None
    user_agent: str | None
    amr: list[str]


def list_for_user(store: Store, uid: str, now: float, limits: Limits) -> list[SessionInfo]:
    """The user's live sessions, newest first; forgets index entries whose session is gone."""
    sids = sorted(store.smembers(USER_INDEX_PREFIX + uid))
    raws = store.get_many([SESSION_PREFIX + sid for sid in sids])
    sessions = []
    for sid, raw in zip(sids, raws, strict=True):
        record = SessionRecord(**json.loads(raw)) if raw else None
        if record is None or record.uid != uid or record.expired(now, limits):
            store.srem(USER_INDEX_PREFIX + uid, sid)
            continue
        sessions.append(
            SessionInfo(
                sid,
                record.created,
                record.last_seen,
                record.auth_time,
                record.ip,
                record.user_agent,
                record.amr,
            )
        )
    return sorted(sessions, key=lambda s: s.last_seen, reverse=True)


def revoke(store: Store, uid: str, sid: str) -> bool:
    """End one of ``uid``'s sessions; False if it is not theirs (or already gone)."""
    if sid not in store.smembers(USER_INDEX_PREFIX + uid):
        return False
    destroy(store, sid, uid)
    return True


def revoke_all(store: Store, uid: str, keep: str | None = None, org_id: str | None = None) -> int:
    """End every session of ``uid`` except ``keep`` (only those active in ``org_id``, when
    given); returns how many ended."""
    sids = [sid for sid in store.smembers(USER_INDEX_PREFIX + uid) if sid != keep]
    if org_id is not None:
        raws = store.get_many([SESSION_PREFIX + sid for sid in sids])
        sids = [
            sid
            for sid, raw in zip(sids, raws, strict=True)
            if raw is not None and json.loads(raw).get("org_id") == org_id
        ]
    for sid in sids:
        destroy(store, sid, uid)
    return len(sids)
