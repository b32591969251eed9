"""Codes, grants and tokens: what is issued, how it is checked, how it is revoked.

- An authorization code is single-use and short-lived; it is kept (hashed) after use, so a
  replay is recognised and revokes the grant the first use created (RFC 6749 4.1.2).
- A grant is one authorisation's family of refresh tokens. Every refresh rotates the token;
  presenting a used one again is taken as theft and revokes the family (RFC 9700 4.14).
- Access tokens are JWTs (RFC 9068) that resource servers verify offline. Our own endpoints
  (UserInfo, introspection) also ask the store, in one round trip, whether the token, its
  grant or the IdP session behind it has ended, so revocation shows at once.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from joserfc.jws import extract_compact
from sqlalchemy import insert, select, update

from idp.common.signing import InvalidToken, verify
from idp.extensions import db
from idp.models import User
from idp.models.oidc import AuthorizationCode, OAuthClient, RefreshToken, TokenGrant
from idp.runtime import runtime
from idp.services import audit, sessions
from idp.services.audit import Actor, Origin
from idp.services.oidc import claims, keys

CODE_SECONDS = 60
ACCESS_TOKEN_SECONDS = 300
ID_TOKEN_SECONDS = 600
OFFLINE_GRANT_DAYS = 30
REVOKED_PREFIX = "oidc:revoked:"
REVOKED_GRANT_PREFIX = "oidc:revoked-grant:"
SESSION_CLIENTS_PREFIX = "oidc:sid-clients:"


def digest(secret: str) -> str:
    """Codes and refresh tokens carry 256 random bits: a plain SHA-256 keeps them safe."""
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def _at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


@dataclass(frozen=True)
class Subject:
    """Who a token speaks for, and how they signed in (from the IdP session)."""

    user: User
    org_id: str | None
    sid: str
    auth_time: float
    amr: list[str] = field(default_factory=list)


# --- authorization codes -------------------------------------------------------------------


def save_code(
    code: str,
    client: OAuthClient,
    subject: Subject,
    *,
    redirect_uri: str,
    scope: str,
    nonce: str | None,
    code_challenge: str | None,
    code_challenge_method: str | None,
) -> None:
    now = runtime().clock()
    db.session.add(
        AuthorizationCode(
            code_hash=digest(code),
            client_id=client.id,
            user_id=subject.user.id,
            org_id=subject.org_id,
            sid=subject.sid,
            redirect_uri=redirect_uri,
            scope=scope,
            nonce=nonce,
            code_challenge=code_challenge,
            code_challenge_method=code_challenge_method,
            auth_time=subject.auth_time,
            amr=list(subject.amr),
            expires_at=_at(now + CODE_SECONDS),
        )
    )
    _remember_client(subject.sid, client.id)
    db.session.commit()


def find_code(code: str, client: OAuthClient, origin: Origin) -> AuthorizationCode | None:
    """The unused, unexpired code issued to ``client``; a replayed code revokes its grant."""
    if not code or len(code) > 200:
        return None
    row = db.session.get(AuthorizationCode, digest(code))
    if row is None or row.client_id != client.id:
        return None
    now = runtime().clock()
    if row.used_at is not None:
        if row.grant_id:
            revoke_grant(row.grant_id, "code_replay", origin=origin)
        audit.record(
            "oidc.code.replay",
            outcome="failure",
            actor=Actor(row.user_id),
            target=client.id,
            origin=origin,
            details={"grant_id": row.grant_id},
            now=now,
        )
        return None
    if row.expires_at <= _at(now):
        return None
    return row


def consume_code(row: AuthorizationCode) -> bool:
    """Mark the code used; False if a concurrent request used it first."""
    now = _at(runtime().clock())
    done = db.session.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.code_hash == row.code_hash, AuthorizationCode.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return done.rowcount == 1  # type: ignore[attr-defined]


# --- grants and refresh tokens -------------------------------------------------------------


def open_grant(client: OAuthClient, subject: Subject, scope: str) -> TokenGrant:
    """A new refresh-token family. Offline access outlives the session; otherwise the grant
    ends with it."""
    now = runtime().clock()
    offline = "offline_access" in scope.split()
    lifetime = OFFLINE_GRANT_DAYS * 86400 if offline else runtime().session_limits.absolute_seconds
    grant = TokenGrant(
        id=str(uuid.uuid4()),
        client_id=client.id,
        user_id=subject.user.id,
        org_id=subject.org_id,
        sid=None if offline else subject.sid,
        scope=scope,
        auth_time=subject.auth_time,
        amr=list(subject.amr),
        created_at=_at(now),
        expires_at=_at(now + lifetime),
    )
    db.session.add(grant)
    db.session.flush()  # before its refresh tokens (no ORM relationship orders the inserts)
    return grant


def new_refresh_token(grant: TokenGrant) -> str:
    token = secrets.token_urlsafe(32)
    db.session.execute(
        insert(RefreshToken).values(
            token_hash=digest(token), grant_id=grant.id, created_at=_at(runtime().clock())
        )
    )
    return token


@dataclass(frozen=True)
class Refresh:
    token: RefreshToken
    grant: TokenGrant
    user: User

    def subject(self) -> Subject:
        grant = self.grant
        return Subject(
            self.user, grant.org_id, grant.sid or "", grant.auth_time or 0.0, list(grant.amr)
        )


def find_refresh_token(token: str, client: OAuthClient, origin: Origin) -> Refresh | None:
    """The live refresh token for ``client``. A used one means theft: its grant is revoked."""
    if not token or len(token) > 200:
        return None
    # One query for the token, its grant and its user: the token endpoint's hottest path.
    row = db.session.execute(
        select(RefreshToken, TokenGrant, User)
        .join(TokenGrant, RefreshToken.grant_id == TokenGrant.id)
        .join(User, TokenGrant.user_id == User.id)
        .where(RefreshToken.token_hash == digest(token))
    ).first()
    if row is None:
        return None
    refresh, grant, user = row
    if grant.client_id != client.id or grant.revoked_at is not None:
        return None
    if refresh.used_at is not None:
        revoke_grant(grant.id, "refresh_token_reuse", origin=origin, outcome="failure")
        return None
    now = runtime().clock()
    if grant.expires_at <= _at(now) or not user.is_active:
        return None
    if grant.sid is not None and not session_alive(grant.sid, now):
        return None
    return Refresh(refresh, grant, user)


def rotate(refresh: Refresh) -> str | None:
    """Spend ``refresh`` and return its successor; None if it was spent concurrently."""
    now = _at(runtime().clock())
    done = db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.token_hash == refresh.token.token_hash, RefreshToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return new_refresh_token(refresh.grant)


def revoke_grant(grant_id: str, reason: str, *, origin: Origin, outcome: str = "success") -> None:
    """End a grant: its refresh tokens stop working now, its access tokens at their next
    check (the store marker lives as long as they could)."""
    grant = db.session.get(TokenGrant, grant_id)
    if grant is None or grant.revoked_at is not None:
        return  # ended already (a code replayed again): its marker outlives its tokens
    now = runtime().clock()
    grant.revoked_at = _at(now)
    runtime().store.put(REVOKED_GRANT_PREFIX + grant_id, reason, ACCESS_TOKEN_SECONDS + 60)
    audit.record(
        "oidc.grant.revoke",
        outcome=outcome,
        actor=Actor(grant.user_id),
        org_id=grant.org_id,
        target=grant.client_id,
        origin=origin,
        details={"grant_id": grant_id, "reason": reason},
        now=now,
    )


def revoke_grants_of_session(sid: str, origin: Origin) -> int:
    """The session ended: so do the grants bound to it (offline grants are not bound)."""
    ids = list(
        db.session.scalars(
            select(TokenGrant.id).where(TokenGrant.sid == sid, TokenGrant.revoked_at.is_(None))
        )
    )
    for grant_id in ids:
        revoke_grant(grant_id, "session_ended", origin=origin)
    return len(ids)


def revoke_grants_of_user(user_id: str, reason: str, origin: Origin) -> int:
    """Every live grant of a user, offline ones included (a disabled account): re-enabling the
    account later does not bring them back."""
    ids = list(
        db.session.scalars(
            select(TokenGrant.id).where(
                TokenGrant.user_id == user_id, TokenGrant.revoked_at.is_(None)
            )
        )
    )
    for grant_id in ids:
        revoke_grant(grant_id, reason, origin=origin)
    return len(ids)


# --- issuing -------------------------------------------------------------------------------


def access_token(
    client: OAuthClient, scope: str, *, subject: Subject | None, grant_id: str | None
) -> tuple[str, dict[str, Any]]:
    """An RFC 9068 JWT access token and its claims."""
    now = int(runtime().clock())
    issuer = runtime().settings.issuer
    jti = f"{grant_id or 'cc'}.{secrets.token_urlsafe(12)}"
    body: dict[str, Any] = {
        "iss": issuer,
        "aud": issuer,
        "sub": subject.user.id if subject else client.id,
        "client_id": client.id,
        "scope": scope,
        "iat": now,
        "exp": now + ACCESS_TOKEN_SECONDS,
        "jti": jti,
    }
    if subject is not None:
        body |= {
            "auth_time": int(subject.auth_time),
            "amr": subject.amr,
            "acr": claims.acr(subject.amr),
            "org_id": subject.org_id,
        }
        if subject.sid:  # offline access is bound to no session
            body["sid"] = subject.sid
    return keys.signer("RS256").sign(body, typ="at+jwt"), body


def id_token(
    client: OAuthClient,
    subject: Subject,
    scope: str,
    *,
    nonce: str | None,
    access: str | None,
) -> str:
    now = int(runtime().clock())
    signer = keys.signer(client.id_token_alg)
    body: dict[str, Any] = {
        "iss": runtime().settings.issuer,
        "sub": subject.user.id,
        "aud": client.id,
        "azp": client.id,
        "iat": now,
        "exp": now + ID_TOKEN_SECONDS,
        "auth_time": int(subject.auth_time),
        "amr": subject.amr,
        "acr": claims.acr(subject.amr),
    }
    if subject.sid:  # offline access is bound to no session
        body["sid"] = subject.sid
    if nonce:
        body["nonce"] = nonce
    if access:
        body["at_hash"] = claims.half_hash(access)
    body |= claims.for_scope(subject.user, subject.org_id, scope)
    return signer.sign(body)


def subject_from_code(row: AuthorizationCode) -> Subject | None:
    """Who the code was issued to, if their account and session are still alive."""
    user = db.session.get(User, row.user_id)
    if user is None or not user.is_active or not session_alive(row.sid, runtime().clock()):
        return None
    return Subject(user, row.org_id, row.sid, row.auth_time, list(row.amr))


# --- checking access tokens ----------------------------------------------------------------


@dataclass(frozen=True)
class AccessToken:
    claims: dict[str, Any]

    @property
    def scopes(self) -> list[str]:
        return str(self.claims.get("scope", "")).split()


def check_access_token(token: str) -> AccessToken | None:
    """The claims of a live access token: signed by us, unexpired, and not revoked (itself,
    its grant or its session), its user still active. None otherwise."""
    body = _verified(token)
    if body is None:
        return None
    rt = runtime()
    now = rt.clock()
    if body.get("iss") != rt.settings.issuer or not isinstance(body.get("exp"), int):
        return None
    if body["exp"] <= now:
        return None
    jti = str(body.get("jti", ""))
    grant_id = jti.split(".", 1)[0]
    sid = body.get("sid")
    probes = [REVOKED_PREFIX + jti, REVOKED_GRANT_PREFIX + grant_id]
    if sid:
        probes.append(sessions.SESSION_PREFIX + str(sid))
    found = rt.store.get_many(probes)
    if found[0] is not None or found[1] is not None:
        return None
    if sid and not _live_record(found[2], now):
        return None
    if grant_id != "cc":  # a user's token, with a session or not (offline refreshes have none)
        user = db.session.get(User, body.get("sub"))
        if user is None or not user.is_active:
            return None
    return AccessToken(body)


def _verified(token: str) -> dict[str, Any] | None:
    if not token or len(token) > 8192:
        return None
    try:
        return verify(token, keys.key_set(), typ="at+jwt")
    except InvalidToken:
        pass
    # Signed by a key this worker has not loaded yet (rotated in another process)?
    try:
        kid = extract_compact(token.encode()).headers().get("kid")
    except Exception:
        return None
    if kid and kid not in {k.get("kid") for k in keys.public_jwks()["keys"]}:
        keys.reload()
        try:
            return verify(token, keys.key_set(), typ="at+jwt")
        except InvalidToken:
            return None
    return None


def _live_record(raw: str | None, now: float) -> bool:
    if raw is None:
        return False
    record = sessions.SessionRecord(**json.loads(raw))
    return record.uid is not None and not record.expired(now, runtime().session_limits)


def session_alive(sid: str, now: float) -> bool:
    return _live_record(runtime().store.get(sessions.SESSION_PREFIX + sid), now)


def revoke_access_token(token: AccessToken) -> None:
    ttl = max(1, int(token.claims["exp"]) - int(runtime().clock()) + 60)
    runtime().store.put(REVOKED_PREFIX + str(token.claims["jti"]), "revoked", ttl)


# --- which clients a session signed in to (for back-channel logout) ------------------------


def _remember_client(sid: str, client_id: str) -> None:
    runtime().store.sadd(
        SESSION_CLIENTS_PREFIX + sid, client_id, runtime().session_limits.absolute_seconds
    )


def clients_of_session(sid: str) -> set[str]:
    return runtime().store.smembers(SESSION_CLIENTS_PREFIX + sid)
