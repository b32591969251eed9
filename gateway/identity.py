"""Who is calling, as the upstream is told: plain headers for convenience and a signed
assertion it can verify against the IdP's JWKS. Every header is always sent (empty when there
is nothing to say): Caddy would otherwise pass a literal placeholder upstream."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from gateway.messages import wire
from idp.common.signing import Signer

ASSERTION_SECONDS = 60
# A signed assertion is reused for the same caller (same session, permissions and sign-in) for
# this long, so it always has at least half its life left; signing costs more than the rest
# of a request. The session itself is still checked on every request.
REUSE_SECONDS = 30
MAX_CACHED = 10_000
HEADER_PREFIX = "x-bascule-"
IDENTITY_HEADERS = (
    "X-Bascule-User", "X-Bascule-Email", "X-Bascule-Org", "X-Bascule-Permissions",
    "X-Bascule-Assertion",
)  # fmt: skip


@dataclass(frozen=True)
class Caller:
    uid: str
    email: str
    sid: str
    permissions: frozenset[str]
    amr: tuple[str, ...]
    auth_time: float


def headers(
    caller: Caller | None, *, signer: Signer, issuer: str, audience: str, org: str, now: float
) -> dict[str, str]:
    if caller is None:
        return dict.fromkeys(IDENTITY_HEADERS, "")
    permissions = sorted(caller.permissions)
    assertion = signer.sign(
        {
            "iss": issuer,
            "aud": audience,
            "sub": caller.uid,
            "email": caller.email,
            "org": org,
            "permissions": permissions,
            "sid": caller.sid,
            "amr": list(caller.amr),
            "auth_time": int(caller.auth_time),
            "iat": int(now),
            "exp": int(now) + ASSERTION_SECONDS,
            "jti": secrets.token_urlsafe(12),
        }
    )
    return {
        "X-Bascule-User": caller.uid,
        "X-Bascule-Email": wire(caller.email),
        "X-Bascule-Org": org,
        "X-Bascule-Permissions": " ".join(permissions),
        "X-Bascule-Assertion": assertion,
    }


class Assertions:
    """Identity headers per caller, signed at most once per ``REUSE_SECONDS`` (per worker)."""

    def __init__(self, signer: Signer, issuer: str, audience: str, org: str) -> None:
        self.signer, self.issuer, self.audience, self.org = signer, issuer, audience, org
        self._cache: dict[Caller, tuple[float, dict[str, str]]] = {}

    def headers_for(self, caller: Caller | None, now: float) -> dict[str, str]:
        if caller is None:
            return dict.fromkeys(IDENTITY_HEADERS, "")
        cached = self._cache.get(caller)
        if cached is not None and now - cached[0] < REUSE_SECONDS:
            return cached[1]
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        fresh = headers(
            caller, signer=self.signer, issuer=self.issuer, audience=self.audience,
            org=self.org, now=now,
        )  # fmt: skip
        self._cache[caller] = (now, fresh)
        return fresh
