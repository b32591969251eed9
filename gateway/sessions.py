"""Gateway sessions, bound to IdP sessions, and the per-request check.

The cookie is ``<token>.<idp sid>.<user id>``: carrying the ids lets a request read, in one
store round trip, the gateway session (by the token's hash), the IdP session it is bound to,
and the user's cached permission set with its organisation's version. The gateway session
record repeats the ids, so a cookie with ids swapped in matches nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import asdict, dataclass, replace
from functools import lru_cache

from gateway.store import GatewayStore
from idp.common import permission_cache
from idp.common.session_record import SESSION_PREFIX, Limits, SessionRecord

PREFIX = "gw:sess:"
PARSED_CACHE = 4096  # records, by their exact stored text (see _gateway_session)
BY_IDP_SESSION = "gw:sid:"  # the gateway sessions of one IdP session, for back-channel logout
_COOKIE = re.compile(r"^([A-Za-z0-9_-]{43})\.([0-9a-f]{64})\.([0-9a-f-]{36})$")


@dataclass(frozen=True)
class GatewaySession:
    uid: str
    email: str
    sid: str  # the IdP session's public id
    created: float
    id_token: str  # the hint for RP-initiated logout


@dataclass(frozen=True)
class Cookie:
    key: str  # store key of the gateway session
    sid: str
    uid: str


def parse_cookie(value: str | None) -> Cookie | None:
    return _parse_cookie(value) if value else None


# A pure function of the cookie's text (the store key is its token's hash): reused, it saves a
# regular expression and a SHA-256 per request; whatever it names is still read every time.
@lru_cache(maxsize=PARSED_CACHE)
def _parse_cookie(value: str) -> Cookie | None:
    match = _COOKIE.match(value)
    if match is None:
        return None
    token, sid, uid = match.groups()
    return Cookie(PREFIX + hashlib.sha256(token.encode()).hexdigest(), sid, uid)


async def create(store: GatewayStore, session: GatewaySession, limits: Limits) -> str:
    """Store a new session; returns the cookie value."""
    token = secrets.token_urlsafe(32)
    key = PREFIX + hashlib.sha256(token.encode()).hexdigest()
    await store.put(key, json.dumps(asdict(session)), limits.absolute_seconds)
    await store.sadd(BY_IDP_SESSION + session.sid, key, limits.absolute_seconds)
    return f"{token}.{session.sid}.{session.uid}"


async def end_for_idp_session(store: GatewayStore, sid: str) -> int:
    keys = await store.smembers(BY_IDP_SESSION + sid)
    await store.delete(*keys, BY_IDP_SESSION + sid)
    return len(keys)


@dataclass(frozen=True)
class Found:
    """What one request's round trip found."""

    session: GatewaySession
    idp: SessionRecord
    permissions: frozenset[str] | None  # None: the cached set is missing or stale


async def look_up(
    store: GatewayStore, cookie: Cookie, org_id: str | None, now: float, limits: Limits
) -> Found | None:
    """The live gateway session behind ``cookie`` with its live IdP session, or None."""
    found = await store.get_many(_keys(cookie, org_id))
    if found[0] is None or found[1] is None:
        return None
    session, idp = _gateway_session(found[0]), _idp_session(found[1])
    if session.sid != cookie.sid or session.uid != cookie.uid or idp.uid != cookie.uid:
        return None
    if idp.expired(now, limits) or now - session.created > limits.absolute_seconds:
        return None
    permissions = _permissions(found[2], found[3]) if org_id is not None else None
    return Found(session, idp, permissions)


@lru_cache(maxsize=PARSED_CACHE)
def _keys(cookie: Cookie, org_id: str | None) -> tuple[str, ...]:
    """The keys one request reads: names only, derived from the cookie (the values are read)."""
    keys = (cookie.key, SESSION_PREFIX + cookie.sid)
    if org_id is None:
        return keys
    return (
        *keys,
        permission_cache.value_key(org_id, cookie.uid),
        permission_cache.version_key(org_id),
    )


# The records are read fresh from the store on every request; only their parsing is reused,
# keyed by the exact text read, so a changed or deleted record is never served from here.
# The parsed objects are shared: nothing may change them (``touch`` makes a copy).
@lru_cache(maxsize=PARSED_CACHE)
def _gateway_session(raw: str) -> GatewaySession:
    return GatewaySession(**json.loads(raw))


@lru_cache(maxsize=PARSED_CACHE)
def _idp_session(raw: str) -> SessionRecord:
    return SessionRecord(**json.loads(raw))


@lru_cache(maxsize=PARSED_CACHE)
def _permissions(raw: str | None, version: str | None) -> frozenset[str] | None:
    return permission_cache.decode(raw, version)


async def touch(
    store: GatewayStore, sid: str, record: SessionRecord, now: float, limits: Limits
) -> None:
    """Activity through the gateway keeps the IdP session from idling out (once a minute).
    Only while it exists: a touch racing a revocation must not bring the session back."""
    touched = replace(record, last_seen=now)
    await store.replace(SESSION_PREFIX + sid, json.dumps(asdict(touched)), touched.ttl(now, limits))
