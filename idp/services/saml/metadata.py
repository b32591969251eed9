"""The IdP's metadata: from a file, pasted XML or a URL, into what a connection needs.

python3-saml's parser reads it (its XML parser refuses DTDs and entities). Fetching is ours:
http(s) only, public addresses only (for admins), a short timeout and a size cap, so a slow or
huge answer cannot tie up a worker and the server cannot be turned against its own network.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from onelogin.saml2.constants import OneLogin_Saml2_Constants as Constants
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser as Parser

from idp.services.errors import ServiceError

MAX_METADATA_BYTES = 1024 * 1024
FETCH_TIMEOUT_SECONDS = 10
MAX_ENTITY_ID, MAX_URL = 1024, 2000  # the columns that keep them


class MetadataError(ServiceError):
    """The metadata could not be fetched or does not describe a usable SAML IdP."""


@dataclass(frozen=True)
class IdpDescriptor:
    entity_id: str
    sso_url: str
    slo_url: str | None
    certificates: list[str]  # base64 DER, signing certificates
    wants_signed_requests: bool


def parse(xml: str | bytes, entity_id: str | None = None) -> IdpDescriptor:
    """The IdP in ``xml`` (the one named ``entity_id`` when the file lists several)."""
    try:
        found: dict[str, Any] = Parser.parse(
            xml,
            required_sso_binding=Constants.BINDING_HTTP_REDIRECT,
            required_slo_binding=Constants.BINDING_HTTP_REDIRECT,
            entity_id=entity_id,
        )
    except Exception as error:  # the parser raises lxml, XML-security and plain errors alike
        name = type(error).__name__
        raise MetadataError(f"the metadata is not valid SAML metadata ({name})") from None
    idp = found.get("idp") or {}
    sso = (idp.get("singleSignOnService") or {}).get("url")
    if not idp.get("entityId") or not sso:
        raise MetadataError("the metadata names no IdP with an HTTP-Redirect SingleSignOnService")
    certificates = _signing_certificates(idp)
    if not certificates:
        raise MetadataError("the metadata holds no signing certificate")
    slo = (idp.get("singleLogoutService") or {}).get("url")
    if len(idp["entityId"]) > MAX_ENTITY_ID or max(len(sso), len(slo or "")) > MAX_URL:
        raise MetadataError("the metadata's entity ID or endpoint URLs are too long")
    return IdpDescriptor(
        entity_id=idp["entityId"],
        sso_url=_http_url(sso, "SingleSignOnService"),
        slo_url=_http_url(slo, "SingleLogoutService") if slo else None,
        certificates=certificates,
        wants_signed_requests=bool((found.get("security") or {}).get("authnRequestsSigned")),
    )


def check_url(url: str) -> None:
    """Refuse a metadata URL that is not http(s), before anything is fetched or stored."""
    _http_url(url, "metadata URL")


def fetch(url: str, *, internal_allowed: bool) -> bytes:
    """The document at ``url``, at most ``MAX_METADATA_BYTES``; redirects are not followed.

    Unless ``internal_allowed`` (the operator, or a development instance), every address the
    name resolves to must be public, and the connection goes to the address that was checked:
    an admin cannot make the server fetch from loopback, the private network or a cloud
    metadata service, not even by a redirect or a name that resolves differently a moment
    later. Errors say what failed, never what a port answered.
    """
    check_url(url)
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host, port = parts.hostname or "", parts.port or (443 if secure else 80)
    address = _address_for(host, port, internal_allowed)
    connection = (_PinnedHTTPS if secure else _PinnedHTTP)(host, port, address)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("GET", target, headers={"Accept": "application/samlmetadata+xml"})
        answer = connection.getresponse()
        if answer.status != 200:
            raise MetadataError(f"{url} answered HTTP {answer.status}, not the metadata")
        body: bytes = answer.read(MAX_METADATA_BYTES + 1)
    except (OSError, http.client.HTTPException):
        raise MetadataError(f"could not fetch the metadata from {url}") from None
    finally:
        connection.close()
    if len(body) > MAX_METADATA_BYTES:
        raise MetadataError(f"the metadata at {url} is larger than {MAX_METADATA_BYTES} bytes")
    return body


def _address_for(host: str, port: int, internal_allowed: bool) -> str:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise MetadataError(f"the metadata host {host!r} does not resolve") from None
    addresses = [str(info[4][0]) for info in found]
    if not internal_allowed and not all(_public(a) for a in addresses):
        raise MetadataError(
            f"the metadata host {host!r} is not a public address: Bascule fetches it itself, "
            "and may not be sent to loopback, private or link-local addresses"
        )
    return addresses[0]


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to the address that was checked, whatever the name resolves to by now."""

    def __init__(self, host: str, port: int, address: str) -> None:
        super().__init__(host, port, timeout=FETCH_TIMEOUT_SECONDS)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to the checked address, the certificate still verified against the host name."""

    def __init__(self, host: str, port: int, address: str) -> None:
        super().__init__(host, port, timeout=FETCH_TIMEOUT_SECONDS)
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = ssl.create_default_context().wrap_socket(raw, server_hostname=self.host)


def _signing_certificates(idp: dict[str, Any]) -> list[str]:
    many = (idp.get("x509certMulti") or {}).get("signing") or []
    one = [idp["x509cert"]] if idp.get("x509cert") else []
    return ["".join(c.split()) for c in [*many, *one]]


def _http_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise MetadataError(f"the {what} must be an http(s) URL, not {url!r}")
    return url
