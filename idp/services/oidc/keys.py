"""The provider's signing keys: one current key per algorithm, older ones published until the
tokens they signed have expired.

Each worker keeps the unsealed keys in memory for ``CACHE_SECONDS``: unsealing on every token
would cost more than signing. After ``bascule keys rotate --signing`` in another process,
workers move to the new key within that time; both keys verify meanwhile.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from joserfc import jwk
from sqlalchemy import select

from idp.common import gateway_key, signing
from idp.common.signing import Signer
from idp.extensions import db
from idp.models.oidc import SigningKey
from idp.runtime import runtime
from idp.services import audit
from idp.services.audit import Actor, Origin

CACHE_SECONDS = 30.0
# A retired key stays in the JWKS this long after it stopped signing: longer than any token
# it signed lives (ID and access tokens, logout tokens, gateway assertions).
PUBLISH_AFTER_RETIREMENT = timedelta(hours=1)


@dataclass(frozen=True)
class _Loaded:
    signers: dict[str, Signer]  # current signer per algorithm
    jwks: dict[str, Any]
    key_set: jwk.KeySet
    loaded_at: float


_cache: dict[str, _Loaded] = {}  # per database URL, so test apps do not share keys
_lock = threading.Lock()


def ensure_keys(now: float | None = None) -> bool:
    """Create a current key for each algorithm that has none; True if any was made."""
    existing = set(
        db.session.scalars(select(SigningKey.alg).where(SigningKey.retired_at.is_(None)))
    )
    made = False
    for alg in signing.ALGORITHMS:
        if alg not in existing:
            _add(alg)
            made = True
    if made:
        db.session.commit()
        reload()
    return made


def rotate(*, actor: Actor = audit.ANONYMOUS, origin: Origin = audit.CLI) -> list[str]:
    """New current keys for every algorithm; the old ones sign no more but stay published."""
    now = datetime.fromtimestamp(runtime().clock(), UTC)
    current = db.session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None)))
    retired = []
    for key in current:
        key.retired_at = now
        key.retire_after = now + PUBLISH_AFTER_RETIREMENT
        retired.append(key.kid)
    new = [_add(alg).kid for alg in signing.ALGORITHMS]
    new.append(gateway_key.rotate(runtime().settings.keys_dir, runtime().keyring))
    audit.record(
        "oidc.keys.rotate",
        actor=actor,
        origin=origin,
        details={"new": new, "retired": retired},
    )
    reload()
    return new


def _add(alg: str) -> SigningKey:
    made = signing.generate(alg, runtime().keyring)
    key = SigningKey(
        kid=made.kid,
        alg=alg,
        sealed_private_key=made.sealed_private_key,
        public_jwk=made.public_jwk,
    )
    db.session.add(key)
    db.session.flush()
    return key


def signer(alg: str = "RS256") -> Signer:
    return _loaded().signers[alg]


def public_jwks() -> dict[str, Any]:
    return _loaded().jwks


def key_set() -> jwk.KeySet:
    return _loaded().key_set


def _loaded() -> _Loaded:
    url = runtime().settings.sqlalchemy_url
    cached = _cache.get(url)
    if cached is not None and time.monotonic() - cached.loaded_at < CACHE_SECONDS:
        return cached
    with _lock:
        loaded = _load()
        _cache[url] = loaded
        return loaded


def _load() -> _Loaded:
    now = datetime.fromtimestamp(runtime().clock(), UTC)
    keys = list(
        db.session.scalars(
            select(SigningKey)
            .where((SigningKey.retire_after.is_(None)) | (SigningKey.retire_after > now))
            .order_by(SigningKey.created_at.desc())
        )
    )
    keyring = runtime().keyring
    signers = {
        key.alg: Signer.unseal(key.kid, key.alg, key.sealed_private_key, keyring)
        for key in reversed(keys)  # newest last, so the newest current key wins
        if key.retired_at is None
    }
    if set(signers) != set(signing.ALGORITHMS):
        raise RuntimeError("No signing keys: run `bascule init` (or `bascule keys rotate`).")
    settings = runtime().settings
    gateway = gateway_key.public_keys(settings.keys_dir)
    jwks = {"keys": [key.public_jwk for key in keys] + gateway}
    return _Loaded(signers, jwks, signing.key_set(jwks), time.monotonic())


def reload() -> None:
    """Drop this worker's cached keys; the next use loads them again."""
    _cache.pop(runtime().settings.sqlalchemy_url, None)
