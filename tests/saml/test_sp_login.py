"""SP-initiated sign-in through a forged (but honest) IdP: JIT, updates, roles, sign-in."""

from __future__ import annotations

import base64
from urllib.parse import unquote, urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from flask import Flask
from lxml import etree

from idp.extensions import db
from idp.models import AuditEvent, SamlConnection
from idp.services import orgs, users
from tests.saml.conftest import connect
from tests.saml.support import FakeIdp, SamlBrowser, cert_body


def test_first_sign_in_creates_the_account_with_the_mapped_role(
    saml_browser: SamlBrowser, fake_idp: FakeIdp
) -> None:
    request = saml_browser.start("/account")
    claims = saml_browser.claims(request, attributes={
        "email": ["alice@corp.example"], "givenName": ["Alice"], "sn": ["Liddell"],
        "groups": ["staff", "admins"],
    })  # fmt: skip
    answer = saml_browser.post(saml_browser.signed(fake_idp, claims), request.relay_state)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].endswith("/account")
    user = users.get_by_email("alice@corp.example")
    assert user.password_hash is None and user.name == "Alice Liddell"
    member = orgs.membership(user, orgs.get("acme"))
    assert member is not None and member.role.name == "admin"
    assert saml_browser.client.get("/account").status_code == 200
    events = [e.event for e in db.session.query(AuditEvent).all()]
    assert "saml.login" in events


def test_authn_requests_are_signed_with_the_connections_own_key_when_the_idp_wants_it(
    app: Flask, base_url: str, browser_client: httpx.Client
) -> None:
    conn = connect(app, FakeIdp(wants_signed_requests=True), slug="signed")
    start = browser_client.get("/saml/signed/login")
    assert start.status_code == 303
    raw = dict(p.split("=", 1) for p in urlsplit(start.headers["location"]).query.split("&"))
    assert unquote(raw["SigAlg"]) == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    # The HTTP-Redirect binding signs these three parameters, as sent, in this order.
    signed_part = "&".join(f"{k}={raw[k]}" for k in ("SAMLRequest", "RelayState", "SigAlg"))
    certificate = x509.load_pem_x509_certificate(conn.sp_certificate.encode())
    public_key = certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(  # raises InvalidSignature if the request was not signed by our SP key
        base64.b64decode(unquote(raw["Signature"])),
        signed_part.encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    # The private key is sealed at rest: nothing in the row reads as a PEM key.
    assert "PRIVATE KEY" not in conn.sealed_sp_key


def test_requests_are_not_signed_when_the_idp_does_not_ask(
    saml_browser: SamlBrowser,
) -> None:
    assert "Signature" not in saml_browser.start().query


def test_sp_metadata_names_our_endpoints_and_certificate(
    connection: SamlConnection, base_url: str, browser_client: httpx.Client
) -> None:
    answer = browser_client.get("/saml/corp/metadata")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/samlmetadata+xml")
    root = etree.fromstring(answer.content)
    assert root.get("entityID") == f"{base_url}/saml/corp/metadata"
    acs = root.find(".//{*}AssertionConsumerService")
    assert acs is not None and acs.get("Location") == f"{base_url}/saml/corp/acs"
    assert cert_body(connection.sp_certificate) in answer.text
    assert browser_client.get("/saml/nope/metadata").status_code == 404
