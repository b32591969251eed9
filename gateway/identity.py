"""Who is calling, as the upstream is told: plain headers for convenience and a signed
assertion it can verify against the IdP's JWKS. Every header is always sent (empty when there
is nothing to say): Caddy would otherwise pass a literal placeholder upstream."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from idp.common.signing import Signer

ASSERTION_SECONDS = 60
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
        "X-Bascule-Email": caller.email,
        "X-Bascule-Org": org,
        "X-Bascule-Permissions": " ".join(permissions),
        "X-Bascule-Assertion": assertion,
    }
