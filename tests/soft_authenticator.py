"""A software WebAuthn authenticator for tests that do not need a browser.

It answers the server's JSON options the way a browser and a ctap2 key would (``none``
attestation, ES256), and lets a test do what a real key never does: answer for another
origin, send a stale sign count, drop the user-verified flag. The browser tests use
Chromium's virtual authenticator instead; this one proves the server's checks one by one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, BE, AT = 0x01, 0x04, 0x08, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Key:
    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey
    user_handle: bytes
    sign_count: int = 0


@dataclass
class SoftAuthenticator:
    origin: str
    rp_id: str
    keys: list[Key] = field(default_factory=list)
    counts_signatures: bool = True  # False: always send 0, like many passkey providers

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        body = {"type": kind, "challenge": challenge, "origin": origin or self.origin}
        return json.dumps({**body, "crossOrigin": False}).encode()

    def create(self, options: dict[str, Any], origin: str | None = None) -> dict[str, Any]:
        """``navigator.credentials.create`` for ``options`` (the server's JSON)."""
        key = Key(
            os.urandom(32),
            ec.generate_private_key(ec.SECP256R1()),
            unb64url(options["user"]["id"]),
        )
        numbers = key.private_key.public_key().public_numbers()
        cose = {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32), -3: numbers.y.to_bytes(32)}
        attested = bytes(16) + struct.pack(">H", len(key.credential_id)) + key.credential_id
        auth_data = (
            hashlib.sha256(options["rp"]["id"].encode()).digest()
            + bytes([UP | UV | AT])
            + struct.pack(">I", key.sign_count)
            + attested
            + cbor2.dumps(cose)
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        self.keys.append(key)
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        return {
            "id": b64url(key.credential_id),
            "rawId": b64url(key.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["usb"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "cross-platform",
        }

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        key: Key | None = None,
        user_verified: bool = True,
        sign_count: int | None = None,
    ) -> dict[str, Any]:
        """``navigator.credentials.get``: signs with ``key`` (default: the first allowed one)."""
        if key is None:
            allowed = {unb64url(c["id"]) for c in options.get("allowCredentials", [])}
            key = next(k for k in self.keys if not allowed or k.credential_id in allowed)
        if self.counts_signatures:
            key.sign_count += 1
        count = key.sign_count if sign_count is None else sign_count
        flags = UP | (UV if user_verified else 0)
        auth_data = (
            hashlib.sha256(options["rpId"].encode()).digest()
            + bytes([flags])
            + struct.pack(">I", count)
        )
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signature = key.private_key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": b64url(key.credential_id),
            "rawId": b64url(key.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(key.user_handle),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "cross-platform",
        }
