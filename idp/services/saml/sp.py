"""Our side of a connection as python3-saml sees it: its settings, our SP metadata and key.

One connection is one SP: its entity ID is its metadata URL, its ACS and SLS live under
``/saml/<slug>/``, and it has its own key pair (sealed at rest). python3-saml runs in strict
mode with every check on; what it leaves open is closed here (signed assertions only, no
SHA-1, at most two minutes of clock skew) and in ``login`` (replay, request binding).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from onelogin.saml2.constants import OneLogin_Saml2_Constants as Constants
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from idp.common.sealing import Keyring
from idp.common.store import Store
from idp.models import SamlConnection
from idp.services.audit import Origin

# python3-saml allows five minutes either way; the SAML profile we follow allows two.
Constants.ALLOWED_CLOCK_DRIFT = 120
SP_KEY_PURPOSE = "saml sp key"
SP_CERT_YEARS = 10
_cache: dict[str, OneLogin_Saml2_Settings] = {}
_CACHE_LIMIT = 256


@dataclass(frozen=True)
class SamlContext:
    """What the sign-in and logout flows need from the running instance."""

    issuer: str
    keyring: Keyring
    store: Store
    origin: Origin
    now: float


def urls(issuer: str, slug: str) -> dict[str, str]:
    """The connection's public URLs (the entity ID is the metadata URL, as DESIGN.md fixes)."""
    base = f"{issuer.rstrip('/')}/saml/{slug}"
    return {
        "entity_id": f"{base}/metadata",
        "metadata": f"{base}/metadata",
        "acs": f"{base}/acs",
        "sls": f"{base}/sls",
        "login": f"{base}/login",
    }


def new_key_pair(common_name: str) -> tuple[bytes, str]:
    """An RSA key and a self-signed certificate for it (PEM): SAML wants the key in a cert."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365 * SP_CERT_YEARS))
        .sign(key, hashes.SHA256())
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


def settings_for(conn: SamlConnection, issuer: str, keyring: Keyring) -> OneLogin_Saml2_Settings:
    """python3-saml's settings for ``conn``, built once per version of the connection.

    Building them parses certificates and unseals the SP key: too slow for every request.
    """
    fingerprint = _fingerprint(conn, issuer)
    cached = _cache.get(fingerprint)
    if cached is None:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        private_key = keyring.unseal(conn.sealed_sp_key, SP_KEY_PURPOSE).decode()
        cached = OneLogin_Saml2_Settings(
            _settings_dict(conn, issuer, private_key), sp_validation_only=False
        )
        _cache[fingerprint] = cached
    return cached


def sp_metadata(conn: SamlConnection, issuer: str, keyring: Keyring) -> str:
    """Our SP metadata for the IdP's administrator: entity ID, ACS, SLS, certificate."""
    settings = settings_for(conn, issuer, keyring)
    xml = settings.get_sp_metadata()
    return xml.decode() if isinstance(xml, bytes) else str(xml)


def request_data(
    url: str,
    *,
    get: dict[str, str] | None = None,
    post: dict[str, str] | None = None,
    query_string: str = "",
) -> dict[str, Any]:
    """The request as python3-saml wants it, built from our own URL for the endpoint.

    Never from the Host header: the Destination and Recipient checks compare against this, so
    a forged Host cannot make a response meant for someone else look addressed to us.
    """
    parts = urlsplit(url)
    return {
        "https": "on" if parts.scheme == "https" else "off",
        "http_host": parts.netloc,
        "script_name": parts.path,
        "get_data": get or {},
        "post_data": post or {},
        # Redirect-binding signatures are checked over the query string exactly as received.
        "query_string": query_string,
        "validate_signature_from_qs": bool(query_string),
    }


def _settings_dict(conn: SamlConnection, issuer: str, private_key: str) -> dict[str, Any]:
    at = urls(issuer, conn.slug)
    idp: dict[str, Any] = {
        "entityId": conn.idp_entity_id,
        "singleSignOnService": {"url": conn.sso_url, "binding": Constants.BINDING_HTTP_REDIRECT},
        "x509certMulti": {"signing": list(conn.idp_certificates)},
    }
    if conn.slo_url:
        idp["singleLogoutService"] = {
            "url": conn.slo_url,
            "binding": Constants.BINDING_HTTP_REDIRECT,
        }
    return {
        "strict": True,
        "debug": False,
        "sp": {
            "entityId": at["entity_id"],
            "assertionConsumerService": {"url": at["acs"], "binding": Constants.BINDING_HTTP_POST},
            "singleLogoutService": {"url": at["sls"], "binding": Constants.BINDING_HTTP_REDIRECT},
            "NameIDFormat": Constants.NAMEID_UNSPECIFIED,
            "x509cert": conn.sp_certificate,
            "privateKey": private_key,
        },
        "idp": idp,
        "security": {
            "authnRequestsSigned": conn.idp_wants_signed_requests,
            "logoutRequestSigned": True,
            "logoutResponseSigned": True,
            "signMetadata": False,
            "wantMessagesSigned": False,
            "wantAssertionsSigned": True,
            "wantAssertionsEncrypted": False,
            "wantNameId": True,
            "wantNameIdEncrypted": False,
            "wantAttributeStatement": False,
            "requestedAuthnContext": False,
            "wantXMLValidation": True,
            "rejectDeprecatedAlgorithm": True,
            "rejectUnsolicitedResponsesWithInResponseTo": True,
            "allowRepeatAttributeName": True,
            "signatureAlgorithm": Constants.RSA_SHA256,
            "digestAlgorithm": Constants.SHA256,
        },
    }


def _fingerprint(conn: SamlConnection, issuer: str) -> str:
    fields = [
        issuer,
        conn.id,
        conn.slug,
        conn.idp_entity_id,
        conn.sso_url,
        conn.slo_url,
        list(conn.idp_certificates),
        conn.idp_wants_signed_requests,
        conn.sealed_sp_key,
        conn.sp_certificate,
    ]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()
