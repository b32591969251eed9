"""Secrets at rest: AES-256-GCM under a data key that names itself, so keys can rotate.

A sealed value reads ``v1.<key id>.<base64url(nonce || ciphertext || tag)>``. The key id in
the clear lets any process pick the right key from the ring after a rotation; the purpose
string is bound as associated data, so a ciphertext moved to another column does not decrypt.

Keys live in ``BASCULE_KEYS_DIR/data/<id>.key`` (32 random bytes, base64) with ``current``
naming the key that seals; ``BASCULE_DATA_KEY`` (``id:base64`` or plain base64) replaces the
folder, for deployments that keep keys in a secret manager.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12


class SealingError(ValueError):
    """A sealed value cannot be opened: wrong key, tampered, or not ours."""


class MissingKeyError(RuntimeError):
    """No data key is configured; ``bascule init`` creates one."""


@dataclass(frozen=True)
class Keyring:
    """The data keys by id, and the id of the one that seals new values."""

    keys: dict[str, bytes]
    current: str

    def seal(self, plaintext: bytes, purpose: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, plaintext, purpose.encode())
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{VERSION}.{self.current}.{body}"

    def unseal(self, token: str, purpose: str) -> bytes:
        try:
            version, key_id, body = token.split(".", 2)
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (ValueError, binascii.Error):
            raise SealingError("not a sealed value") from None
        if version != VERSION or key_id not in self.keys:
            raise SealingError(f"unknown key {key_id!r}")
        try:
            return AESGCM(self.keys[key_id]).decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], purpose.encode()
            )
        except InvalidTag:
            raise SealingError("sealed value does not authenticate") from None

    def derive(self, purpose: str, length: int = 32) -> bytes:
        """A subkey for another use (e.g. Flask's cookie signing), from the current data key."""
        return HKDF(
            algorithm=hashes.SHA256(), length=length, salt=None, info=purpose.encode()
        ).derive(self.keys[self.current])


def _decode_key(text: str, origin: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raise MissingKeyError(f"{origin}: not base64") from None
    if len(key) != KEY_BYTES:
        raise MissingKeyError(f"{origin}: a data key is {KEY_BYTES} bytes, found {len(key)}")
    return key


def load_keyring(keys_dir: Path, env_key: str | None = None) -> Keyring:
    """The ring from ``BASCULE_DATA_KEY`` if set, else from the keys folder."""
    if env_key:
        key_id, _, text = env_key.rpartition(":")
        key_id = key_id or "env"
        return Keyring({key_id: _decode_key(text, "BASCULE_DATA_KEY")}, key_id)
    data_dir = keys_dir / "data"
    current_file = data_dir / "current"
    if not current_file.is_file():
        raise MissingKeyError(f"no data key in {data_dir}; run `bascule init`")
    keys = {path.stem: _decode_key(path.read_text(), str(path)) for path in data_dir.glob("*.key")}
    current = current_file.read_text().strip()
    if current not in keys:
        raise MissingKeyError(f"{current_file} names {current!r}, which is not in {data_dir}")
    return Keyring(keys, current)


def create_data_key(keys_dir: Path) -> str:
    """Write a new random data key, make it current, and return its id."""
    data_dir = keys_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_id = secrets.token_hex(4)
    key_file = data_dir / f"{key_id}.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(os.urandom(KEY_BYTES)).decode() + "\n")
    (data_dir / "current").write_text(key_id + "\n")
    return key_id


def ensure_data_key(keys_dir: Path, env_key: str | None = None) -> bool:
    """Create the first data key unless one exists; True when one was created."""
    if env_key or (keys_dir / "data" / "current").is_file():
        return False
    create_data_key(keys_dir)
    return True
