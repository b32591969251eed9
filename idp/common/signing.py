"""Token signing keys as JWKs: made here, sealed at rest, published as a JWK set.

Shared by the IdP (ID tokens, access tokens, logout tokens) and the gateway (the identity
assertion), so it imports no Flask. Private keys leave this module only sealed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from joserfc import jwk, jwt
from joserfc.errors import JoseError

from idp.common.sealing import Keyring

ALGORITHMS = ("RS256", "ES256")
SEAL_PURPOSE = "bascule signing key"


class InvalidToken(ValueError):
    """A JWT that does not verify: bad signature, unknown key, wrong algorithm or malformed."""


@dataclass(frozen=True)
class NewKey:
    kid: str
    alg: str
    sealed_private_key: str
    public_jwk: dict[str, Any]


def generate(alg: str, keyring: Keyring) -> NewKey:
    """A fresh key for ``alg``; its id is the RFC 7638 thumbprint."""
    key: jwk.RSAKey | jwk.ECKey
    if alg == "RS256":
        key = jwk.RSAKey.generate_key(2048, private=True, auto_kid=True)
    elif alg == "ES256":
        key = jwk.ECKey.generate_key("P-256", private=True, auto_kid=True)
    else:
        raise ValueError(f"unsupported signing algorithm {alg!r}")
    public = {**key.as_dict(private=False), "alg": alg, "use": "sig"}
    sealed = keyring.seal(json.dumps(key.as_dict(private=True)).encode(), SEAL_PURPOSE)
    return NewKey(str(key.kid), alg, sealed, public)


@dataclass(frozen=True)
class Signer:
    """One unsealed private key, ready to sign."""

    kid: str
    alg: str
    key: jwk.RSAKey | jwk.ECKey

    @classmethod
    def unseal(cls, kid: str, alg: str, sealed: str, keyring: Keyring) -> Signer:
        data = json.loads(keyring.unseal(sealed, SEAL_PURPOSE))
        key = jwk.RSAKey.import_key(data) if alg == "RS256" else jwk.ECKey.import_key(data)
        return cls(kid, alg, key)

    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> str:
        return jwt.encode({"alg": self.alg, "kid": self.kid, "typ": typ}, claims, self.key)


def key_set(public_jwks: dict[str, Any]) -> jwk.KeySet:
    """A JWK set to verify with; import once and keep it, importing costs more than checking."""
    return jwk.KeySet.import_key_set(public_jwks)  # type: ignore[arg-type]


def verify(token: str, keys: jwk.KeySet, typ: str | None = None) -> dict[str, Any]:
    """The claims of a JWT signed by one of ``keys``; raises InvalidToken otherwise.

    Only the signature and header are checked here; time and audience rules are the
    caller's, because they differ per token kind.
    """
    try:
        decoded = jwt.decode(token, keys, algorithms=list(ALGORITHMS))
    except (JoseError, ValueError, TypeError) as exc:
        raise InvalidToken(str(exc) or type(exc).__name__) from None
    if typ is not None and decoded.header.get("typ", "").lower() != typ.lower():
        raise InvalidToken(f"token type is not {typ}")
    return dict(decoded.claims)
