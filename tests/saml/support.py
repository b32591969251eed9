"""A forged corporate IdP and a browser that signs in through it, for tests of our SP.

``FakeIdp`` has a key pair made at test time and the metadata to match; ``SamlBrowser`` starts
an SP-initiated sign-in, reads the AuthnRequest we sent, and posts back whatever response the
test forged, following our ACS's same-site hop as a browser does.
"""

from __future__ import annotations

import base64
import time
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from lxml import etree

from tests.saml import forge
from tests.saml.forge import Claims, KeyPair

IDP_ENTITY_ID = "https://idp.corp.example/saml"
IDP_SSO_URL = "https://idp.corp.example/sso"
IDP_SLO_URL = "https://idp.corp.example/slo"
METADATA = """<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"
    xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity_id}">
  <md:IDPSSODescriptor WantAuthnRequestsSigned="{signed}"
      protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data>
      <ds:X509Certificate>{cert}</ds:X509Certificate>
    </ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
        Location="{slo}"/>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
        Location="{sso}"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"""


def cert_body(pem: str) -> str:
    """The base64 DER of a PEM certificate, as metadata carries it."""
    return "".join(line for line in pem.splitlines() if "CERTIFICATE" not in line)


@dataclass
class FakeIdp:
    keys: KeyPair = field(default_factory=forge.make_key_pair)
    entity_id: str = IDP_ENTITY_ID
    wants_signed_requests: bool = False

    def metadata(self) -> str:
        return METADATA.format(
            entity_id=self.entity_id,
            signed=str(self.wants_signed_requests).lower(),
            cert=cert_body(self.keys.cert_pem),
            sso=IDP_SSO_URL,
            slo=IDP_SLO_URL,
        )


@dataclass(frozen=True)
class AuthnRequest:
    id: str
    relay_state: str
    query: dict[str, str]
    xml: etree._Element


def read_redirect(location: str) -> AuthnRequest:
    """The SAML message an HTTP-Redirect binding URL carries (deflated, base64)."""
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    raw = query.get("SAMLRequest") or query["SAMLResponse"]
    xml = etree.fromstring(zlib.decompress(base64.b64decode(raw), -15))
    return AuthnRequest(xml.get("ID", ""), query.get("RelayState", ""), query, xml)


class SamlBrowser:
    """An httpx client acting as the person's browser at our SP (connection ``slug``)."""

    def __init__(self, client: httpx.Client, base_url: str, slug: str) -> None:
        self.client, self.base_url, self.slug = client, base_url, slug

    @property
    def acs_url(self) -> str:
        return f"{self.base_url}/saml/{self.slug}/acs"

    @property
    def entity_id(self) -> str:
        return f"{self.base_url}/saml/{self.slug}/metadata"

    def start(self, next_url: str = "") -> AuthnRequest:
        params = {"next": next_url} if next_url else {}
        answer = self.client.get(f"/saml/{self.slug}/login", params=params)
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"].startswith(IDP_SSO_URL)
        return read_redirect(answer.headers["location"])

    def claims(self, request: AuthnRequest | None, **overrides: Any) -> Claims:
        """Honest claims answering ``request`` (None: IdP-initiated), addressed to us."""
        values: dict[str, Any] = {
            "now": time.time(),
            "in_response_to": request.id if request else None,
            "issuer": IDP_ENTITY_ID,
            "destination": self.acs_url,
            "recipient": self.acs_url,
            "audience": self.entity_id,
            "name_id": "alice@corp.example",
            "attributes": {
                "email": ["alice@corp.example"],
                "givenName": ["Alice"],
                "sn": ["Liddell"],
                "groups": ["staff"],
            },
        }
        values.update(overrides)
        return Claims(**values)

    def signed(self, idp: FakeIdp, claims: Claims) -> str:
        """An honest response: the assertion signed by the IdP's key."""
        return forge.to_b64(forge.sign_assertion(forge.build_response(claims), idp.keys))

    def post(self, saml_response: str, relay_state: str = "") -> httpx.Response:
        """POST to the ACS as the IdP's page does, then follow our same-site hop."""
        posted = self.client.post(
            f"/saml/{self.slug}/acs",
            data={"SAMLResponse": saml_response, "RelayState": relay_state},
        )
        if posted.status_code != 303:
            return posted
        return self.client.get(posted.headers["location"])
