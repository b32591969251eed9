"""The IdP's metadata: from a file, pasted XML or a URL, into what a connection needs.

python3-saml's parser reads it (its XML parser refuses DTDs and entities). Fetching is ours:
http(s) only, a short timeout and a size cap, so a slow or huge answer cannot tie up a worker.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from onelogin.saml2.constants import OneLogin_Saml2_Constants as Constants
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser as Parser

from idp.services.errors import ServiceError

MAX_METADATA_BYTES = 1024 * 1024
FETCH_TIMEOUT_SECONDS = 10


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


def fetch(url: str) -> bytes:
    """The document at ``url``, at most ``MAX_METADATA_BYTES``."""
    check_url(url)
    headers = {"Accept": "application/samlmetadata+xml"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (scheme checked above)
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as answer:  # noqa: S310
            body: bytes = answer.read(MAX_METADATA_BYTES + 1)
    except (OSError, ValueError) as error:
        raise MetadataError(f"could not fetch {url}: {error}") from None
    if len(body) > MAX_METADATA_BYTES:
        raise MetadataError(f"the metadata at {url} is larger than {MAX_METADATA_BYTES} bytes")
    return body


def _signing_certificates(idp: dict[str, Any]) -> list[str]:
    many = (idp.get("x509certMulti") or {}).get("signing") or []
    one = [idp["x509cert"]] if idp.get("x509cert") else []
    return ["".join(c.split()) for c in [*many, *one]]


def _http_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise MetadataError(f"the {what} must be an http(s) URL, not {url!r}")
    return url
