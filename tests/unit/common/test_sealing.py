"""AES-256-GCM sealing of secrets at rest."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from idp.common.sealing import (
    Keyring,
    MissingKeyError,
    SealingError,
    create_data_key,
    load_keyring,
)


def ring(*ids: str) -> Keyring:
    return Keyring({i: os.urandom(32) for i in ids}, ids[-1])


def test_round_trip_and_ciphertext_hides_the_secret() -> None:
    keys = ring("k1")
    sealed = keys.seal(b"JBSWY3DPEHPK3PXP", "totp")
    assert sealed.startswith("v1.k1.")
    assert b"JBSWY3DPEHPK3PXP" not in base64.urlsafe_b64decode(sealed.split(".")[2] + "==")
    assert keys.unseal(sealed, "totp") == b"JBSWY3DPEHPK3PXP"
    assert keys.seal(b"same", "totp") != keys.seal(b"same", "totp")  # fresh nonce each time


def test_purpose_is_bound() -> None:
    keys = ring("k1")
    with pytest.raises(SealingError):
        keys.unseal(keys.seal(b"secret", "totp"), "saml-key")


def test_tampering_is_detected() -> None:
    keys = ring("k1")
    sealed = keys.seal(b"secret", "totp")
    body = bytearray(base64.urlsafe_b64decode(sealed.split(".")[2] + "=="))
    body[-1] ^= 1
    forged = "v1.k1." + base64.urlsafe_b64encode(bytes(body)).decode().rstrip("=")
    with pytest.raises(SealingError):
        keys.unseal(forged, "totp")
    with pytest.raises(SealingError):
        keys.unseal("garbage", "totp")


def test_old_values_open_after_rotation() -> None:
    old = ring("k1")
    sealed = old.seal(b"secret", "totp")
    rotated = Keyring({**old.keys, "k2": os.urandom(32)}, "k2")
    assert rotated.unseal(sealed, "totp") == b"secret"
    assert rotated.seal(b"x", "totp").startswith("v1.k2.")
    with pytest.raises(SealingError):
        Keyring({"k2": rotated.keys["k2"]}, "k2").unseal(sealed, "totp")


def test_keys_folder_and_environment(tmp_path: Path) -> None:
    with pytest.raises(MissingKeyError):
        load_keyring(tmp_path)
    key_id = create_data_key(tmp_path)
    loaded = load_keyring(tmp_path)
    assert loaded.current == key_id
    assert (tmp_path / "data" / f"{key_id}.key").stat().st_mode & 0o077 == 0
    env = load_keyring(tmp_path, "prod:" + base64.b64encode(b"k" * 32).decode())
    assert env.current == "prod" and env.keys["prod"] == b"k" * 32
    with pytest.raises(MissingKeyError):
        load_keyring(tmp_path, base64.b64encode(b"short").decode())
