"""The gateway's assertion-signing key (ES256), kept in the keys folder.

The gateway signs ``X-Bascule-Assertion`` with it; the IdP publishes its public half in its
JWKS, so an upstream verifies assertions against the one key set it already trusts. The
private key is sealed with the data key; the public keys file keeps the previous key too, so
assertions signed just before a rotation still verify.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from idp.common import signing
from idp.common.sealing import Keyring
from idp.common.signing import Signer

PRIVATE_FILE = "gateway-signing.key"
PUBLIC_FILE = "gateway-signing.pub.json"
KEPT_PUBLIC_KEYS = 2


def ensure(keys_dir: Path, keyring: Keyring) -> bool:
    """Create the key unless there is one; True when one was made."""
    if (keys_dir / PRIVATE_FILE).is_file():
        return False
    rotate(keys_dir, keyring)
    return True


def rotate(keys_dir: Path, keyring: Keyring) -> str:
    """A new current key; the previous public key stays published. Returns the new key id."""
    made = signing.generate("ES256", keyring)
    previous = public_keys(keys_dir)[: KEPT_PUBLIC_KEYS - 1]
    _write(keys_dir / PUBLIC_FILE, json.dumps({"keys": [made.public_jwk, *previous]}))
    private = json.dumps({"kid": made.kid, "sealed": made.sealed_private_key})
    _write(keys_dir / PRIVATE_FILE, private)
    return made.kid


def signer(keys_dir: Path, keyring: Keyring) -> Signer:
    entry = json.loads((keys_dir / PRIVATE_FILE).read_text())
    return Signer.unseal(entry["kid"], "ES256", entry["sealed"], keyring)


def public_keys(keys_dir: Path) -> list[dict[str, Any]]:
    path = keys_dir / PUBLIC_FILE
    if not path.is_file():
        return []
    keys: list[dict[str, Any]] = json.loads(path.read_text()).get("keys", [])
    return keys


def _write(path: Path, text: str) -> None:
    """Replace ``path`` atomically, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(path.suffix + ".new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    temporary.replace(path)
