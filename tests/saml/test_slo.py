"""Single logout over the HTTP-Redirect binding, both ways, with messages built and signed here.

The binding signs the URL-encoded query ``SAMLRequest=…&RelayState=…&SigAlg=…`` (SAML 2.0
Bindings, 3.4.4.1), so the IdP's messages are deflated, encoded and signed by hand with its key,
and ours are checked the same way against the connection's SP certificate.
"""

from __future__ import annotations

import base64
import html
import re
import time
import zlib
from collections.abc import Iterator
from urllib.parse import quote_plus, unquote_plus, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from flask import Flask
from lxml import etree

from idp.extensions import db
from idp.models import SamlConnection
from tests.saml import forge
from tests.saml.checks import (
    assert_plain_refusal,
    events,
    rejections,
    sign_in,
    signed_out,
)
from tests.saml.forge import NAMEID_EMAIL, NS_SAML, NS_SAMLP, KeyPair
from tests.saml.support import IDP_ENTITY_ID, IDP_SLO_URL, FakeIdp, SamlBrowser
from tests.support import csrf_token

RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
NS = {"samlp": NS_SAMLP, "saml": NS_SAML}
_REFRESH = re.compile(r'<meta http-equiv="refresh" content="0;url=([^"]+)">')


@pytest.fixture(scope="module")
def other_idp() -> FakeIdp:
    return FakeIdp()


@pytest.fixture
def second_browser(base_url: str, connection: SamlConnection) -> Iterator[SamlBrowser]:
    with httpx.Client(base_url=base_url, timeout=30, headers={"Accept": "text/html"}) as client:
        yield SamlBrowser(client, base_url, connection.slug)


# --- the IdP's side of the binding -------------------------------------------------------------


def logout_request(
    browser: SamlBrowser,
    session_index: str | None,
    *,
    name_id: str = "alice@corp.example",
    issuer: str = IDP_ENTITY_ID,
    destination: str = "",
    age: float = 0,
) -> str:
    index = f"<samlp:SessionIndex>{session_index}</samlp:SessionIndex>" if session_index else ""
    issued = forge.saml_time(time.time() - age)
    return (
        f'<samlp:LogoutRequest xmlns:samlp="{NS_SAMLP}" xmlns:saml="{NS_SAML}" '
        f'ID="{forge.new_id()}" Version="2.0" IssueInstant="{issued}" '
        f'Destination="{destination or sls_url(browser)}"><saml:Issuer>{issuer}</saml:Issuer>'
        f'<saml:NameID Format="{NAMEID_EMAIL}">{name_id}</saml:NameID>{index}'
        "</samlp:LogoutRequest>"
    )


def logout_response(browser: SamlBrowser, in_response_to: str, issuer: str = IDP_ENTITY_ID) -> str:
    return (
        f'<samlp:LogoutResponse xmlns:samlp="{NS_SAMLP}" xmlns:saml="{NS_SAML}" '
        f'ID="{forge.new_id()}" Version="2.0" IssueInstant="{forge.saml_time(time.time())}" '
        f'Destination="{sls_url(browser)}" InResponseTo="{in_response_to}">'
        f"<saml:Issuer>{issuer}</saml:Issuer>"
        f'<samlp:Status><samlp:StatusCode Value="{SUCCESS}"/></samlp:Status>'
        "</samlp:LogoutResponse>"
    )


def sls_url(browser: SamlBrowser) -> str:
    return f"{browser.base_url}/saml/{browser.slug}/sls"


def redirect_query(
    kind: str,
    xml: str,
    keys: KeyPair | None,
    *,
    relay: str = "",
    sig_alg: str = RSA_SHA256,
) -> str:
    """The query string of the HTTP-Redirect binding: deflated, base64, URL-encoded, and (with
    ``keys``) signed over ``kind=…&RelayState=…&SigAlg=…`` exactly as sent."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = deflater.compress(xml.encode()) + deflater.flush()
    parts = [f"{kind}={quote_plus(base64.b64encode(deflated).decode())}"]
    if relay:
        parts.append(f"RelayState={quote_plus(relay)}")
    if keys is None:
        return "&".join(parts)
    parts.append(f"SigAlg={quote_plus(sig_alg)}")
    signed = "&".join(parts)
    key = serialization.load_pem_private_key(keys.private_key_pem.encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    digest = hashes.SHA1() if sig_alg == RSA_SHA1 else hashes.SHA256()  # noqa: S303 - the attack
    signature = key.sign(signed.encode(), padding.PKCS1v15(), digest)
    return f"{signed}&Signature={quote_plus(base64.b64encode(signature).decode())}"


def read_signed_redirect(location: str, kind: str, cert_pem: str) -> tuple[etree._Element, str]:
    """The message our SP sent through the browser, after checking its RSA-SHA256 signature
    with our certificate over the query exactly as sent; returns it and its RelayState."""
    assert location.startswith(IDP_SLO_URL + "?"), location
    raw = dict(part.split("=", 1) for part in urlsplit(location).query.split("&"))
    assert unquote_plus(raw["SigAlg"]) == RSA_SHA256
    signed = "&".join(f"{k}={raw[k]}" for k in (kind, "RelayState", "SigAlg") if k in raw)
    certificate = x509.load_pem_x509_certificate(cert_pem.encode())
    public_key = certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(  # raises InvalidSignature
        base64.b64decode(unquote_plus(raw["Signature"])),
        signed.encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    xml = zlib.decompress(base64.b64decode(unquote_plus(raw[kind])), -15)
    return etree.fromstring(xml), unquote_plus(raw.get("RelayState", ""))


def send(browser: SamlBrowser, query: str) -> httpx.Response:
    """The IdP sends the browser to our SLS with ``query`` (sent exactly as built)."""
    return browser.client.get(f"/saml/{browser.slug}/sls?{query}")


def signed_in_as_alice(browser: SamlBrowser, idp: FakeIdp, session_index: str) -> None:
    assert sign_in(browser, idp, session_index=session_index).status_code == 303
    assert not signed_out(browser.client)


# --- IdP-initiated ------------------------------------------------------------------------------


def test_idp_logout_request_ends_exactly_the_named_session_if_signed_by_the_idp(
    saml_browser: SamlBrowser,
    second_browser: SamlBrowser,
    fake_idp: FakeIdp,
    other_idp: FakeIdp,
    connection: SamlConnection,
) -> None:
    signed_in_as_alice(saml_browser, fake_idp, "_idx-laptop")
    signed_in_as_alice(second_browser, fake_idp, "_idx-phone")

    # Refused, and the session lives on: anyone could otherwise sign people out.
    xml = logout_request(saml_browser, "_idx-laptop")
    tampered = redirect_query("SAMLRequest", xml, fake_idp.keys, relay="a").replace(
        "RelayState=a", "RelayState=b"
    )
    another_issuer = logout_request(
        saml_browser, "_idx-laptop", issuer="https://idp.other.example/saml"
    )
    cases = [
        ("unsigned", redirect_query("SAMLRequest", xml, None), "logout_unsigned"),
        ("another key", redirect_query("SAMLRequest", xml, other_idp.keys), "logout_invalid"),
        (
            "sha-1",
            redirect_query("SAMLRequest", xml, fake_idp.keys, sig_alg=RSA_SHA1),
            "logout_invalid",
        ),
        ("tampered after signing", tampered, "logout_invalid"),
        (
            "another issuer",
            redirect_query("SAMLRequest", another_issuer, fake_idp.keys),
            "logout_invalid",
        ),
        ("not a message", "SAMLRequest=%%%&SigAlg=x&Signature=eA%3D%3D", "logout_malformed"),
    ]
    seen: list[str] = []
    for label, query, reason in cases:
        answer = send(saml_browser, query)
        assert answer.status_code == 400, (label, answer.status_code)
        assert_plain_refusal(answer, "LogoutRequest", "alice@")
        seen.append(reason)
        assert rejections() == seen, label
        assert not signed_out(saml_browser.client), label
    assert events("saml.logout") == []

    # Signed by the IdP: that session ends, and the IdP gets our signed answer.
    request_xml = logout_request(saml_browser, "_idx-laptop")
    request_id = etree.fromstring(request_xml.encode()).get("ID")
    query = redirect_query("SAMLRequest", request_xml, fake_idp.keys, relay="idp-relay/1 2")
    answer = send(saml_browser, query)
    assert answer.status_code == 303, answer.text
    response, relay = read_signed_redirect(
        answer.headers["location"], "SAMLResponse", connection.sp_certificate
    )
    assert relay == "idp-relay/1 2"
    assert response.tag == f"{{{NS_SAMLP}}}LogoutResponse"
    assert response.get("InResponseTo") == request_id
    assert response.get("Destination") == IDP_SLO_URL
    assert response.findtext("saml:Issuer", namespaces=NS) == saml_browser.entity_id
    status = response.find("samlp:Status/samlp:StatusCode", NS)
    assert status is not None and status.get("Value") == SUCCESS
    assert signed_out(saml_browser.client)
    assert not signed_out(second_browser.client)  # another SessionIndex: still signed in
    assert [e.details for e in events("saml.logout")] == [
        {"initiated_by": "idp", "sessions_ended": 1}
    ]
    # Without a SessionIndex, the request names every session of the person.
    query = redirect_query("SAMLRequest", logout_request(saml_browser, None), fake_idp.keys)
    assert send(second_browser, query).status_code == 303
    assert signed_out(second_browser.client)
    assert rejections() == seen


def test_a_logout_request_counts_once_and_only_while_fresh_and_addressed_to_us(
    saml_browser: SamlBrowser, second_browser: SamlBrowser, fake_idp: FakeIdp
) -> None:
    signed_in_as_alice(saml_browser, fake_idp, "_idx-laptop")
    signed_in_as_alice(second_browser, fake_idp, "_idx-phone")
    captured = redirect_query("SAMLRequest", logout_request(saml_browser, None), fake_idp.keys)
    assert send(saml_browser, captured).status_code == 303  # every session of alice ends
    assert signed_out(saml_browser.client) and signed_out(second_browser.client)

    signed_in_as_alice(second_browser, fake_idp, "_idx-phone-2")
    sls = sls_url(saml_browser)
    cases = [
        ("replayed", captured, "logout_replay"),
        (
            "issued twenty minutes ago",
            redirect_query(
                "SAMLRequest", logout_request(saml_browser, None, age=1200), fake_idp.keys
            ),
            "logout_stale",
        ),
        (
            "addressed to a look-alike URL",  # python3-saml takes Destination as a prefix
            redirect_query(
                "SAMLRequest",
                logout_request(saml_browser, None, destination=f"{sls}.evil.example/sls"),
                fake_idp.keys,
            ),
            "logout_wrong_destination",
        ),
    ]
    for label, query, reason in cases:
        answer = send(second_browser, query)
        assert answer.status_code == 400, (label, answer.status_code)
        assert rejections()[-1] == reason, label
        assert not signed_out(second_browser.client), label


# --- SP-initiated ------------------------------------------------------------------------------


def sign_out(browser: SamlBrowser) -> httpx.Response:
    page = browser.client.get("/account")
    assert page.status_code == 200
    return browser.client.post("/logout", data={"csrf_token": csrf_token(page.text)})


def test_sign_out_of_a_saml_session_tells_the_idp(
    saml_browser: SamlBrowser,
    second_browser: SamlBrowser,
    fake_idp: FakeIdp,
    other_idp: FakeIdp,
    connection: SamlConnection,
) -> None:
    signed_in_as_alice(saml_browser, fake_idp, "_idx-laptop")
    signed_in_as_alice(second_browser, fake_idp, "_idx-phone")
    page = sign_out(saml_browser)
    assert page.status_code == 200, page.text
    assert "Signing you out of your organisation" in page.text
    refresh = _REFRESH.search(page.text)
    assert refresh is not None
    request, _ = read_signed_redirect(
        html.unescape(refresh.group(1)), "SAMLRequest", connection.sp_certificate
    )
    assert request.tag == f"{{{NS_SAMLP}}}LogoutRequest"
    assert request.get("Destination") == IDP_SLO_URL
    assert request.findtext("saml:Issuer", namespaces=NS) == saml_browser.entity_id
    assert request.findtext("saml:NameID", namespaces=NS) == "alice@corp.example"
    assert request.findtext("samlp:SessionIndex", namespaces=NS) == "_idx-laptop"
    assert signed_out(saml_browser.client)  # ended before the IdP is even asked
    assert not signed_out(second_browser.client)
    assert len(events("logout")) == 1

    request_id = request.get("ID", "")
    refusals: list[str] = []
    for label, query, reason in (
        (
            "signed by another key",
            redirect_query(
                "SAMLResponse", logout_response(saml_browser, request_id), other_idp.keys
            ),
            "logout_invalid",
        ),
        (
            "unsigned",
            redirect_query("SAMLResponse", logout_response(saml_browser, request_id), None),
            "logout_unsigned",
        ),
        (
            "answering a request we never sent",
            redirect_query(
                "SAMLResponse", logout_response(saml_browser, "_not-ours"), fake_idp.keys
            ),
            "logout_unsolicited",
        ),
    ):
        answer = send(saml_browser, query)
        assert answer.status_code == 400, (label, answer.status_code)
        assert_plain_refusal(answer, "LogoutResponse")
        refusals.append(reason)
        assert rejections() == refusals, label

    confirmed = redirect_query(
        "SAMLResponse", logout_response(saml_browser, request_id), fake_idp.keys
    )
    answer = send(saml_browser, confirmed)
    assert answer.status_code == 200, rejections()
    assert "You are signed out" in answer.text
    assert len(events("saml.logout_confirmed")) == 1
    again = send(saml_browser, confirmed)  # each request is answered once
    assert again.status_code == 400
    assert rejections() == [*refusals, "logout_unsolicited"]


def test_sign_out_without_an_idp_logout_endpoint_just_signs_out(
    app: Flask, saml_browser: SamlBrowser, fake_idp: FakeIdp, connection: SamlConnection
) -> None:
    connection.slo_url = None
    db.session.commit()
    signed_in_as_alice(saml_browser, fake_idp, "_idx-1")
    answer = sign_out(saml_browser)
    assert answer.status_code in (302, 303)
    assert urlsplit(answer.headers["location"]).path == "/login"
    assert signed_out(saml_browser.client)
