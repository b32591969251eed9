"""Attacks on the Assertion Consumer Service, each forged as an attacker would post it.

Every refusal must be a plain 4xx page (no stack trace, no XML), one audit entry
``saml.rejected`` naming the reason, and nobody signed in. The honest control cases (the
encrypted assertion, a minute of clock skew, IdP-initiated sign-in when allowed, the victim's
own sign-in after an attack) show the forgeries are refused for what they attack, not because
the forging is clumsy. Attacks that need the same setup share a test (each checked for its own
audit entry, in order): a fresh app and database per test is what costs time here.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from flask import Flask
from lxml import etree

from idp.extensions import db
from idp.models import SamlConnection
from idp.services import orgs
from tests.saml import forge
from tests.saml.checks import (
    Refusals,
    assert_plain_refusal,
    assert_refused,
    identities,
    rejections,
    signed_out,
    user,
)
from tests.saml.conftest import connect
from tests.saml.forge import NSMAP
from tests.saml.support import AuthnRequest, FakeIdp, SamlBrowser
from tests.support import make_user

EVIL = {"email": ["ceo@corp.example"], "groups": ["admins"]}
SKEW = 120  # the clock skew we allow, in seconds
Forgery = Callable[[AuthnRequest], str]  # the SAMLResponse field answering a request


@pytest.fixture(scope="module")
def other_idp() -> FakeIdp:
    """Another organisation's IdP: a key and an entity ID of its own."""
    return FakeIdp(entity_id="https://idp.other.example/saml")


def new_browser(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=30, headers={"Accept": "text/html"})


@pytest.fixture
def second_browser(base_url: str, connection: SamlConnection) -> Iterator[SamlBrowser]:
    with new_browser(base_url) as client:
        yield SamlBrowser(client, base_url, connection.slug)


def refuse(
    browser: SamlBrowser,
    refusals: Refusals,
    request: AuthnRequest,
    forged: str,
    reason: str,
    label: str,
) -> None:
    """Answer ``request`` with the forged SAMLResponse and see it refused for ``reason``."""
    answer = browser.post(forged, request.relay_state)
    refusals.check(answer, browser.client, reason, "ceo@", "evil.example", label=label)


def honest_sign_in_works(browser: SamlBrowser, idp: FakeIdp) -> None:
    """The control: after the attacks, the honest answer still signs alice in."""
    request = browser.start()
    answer = browser.post(browser.signed(idp, browser.claims(request)), request.relay_state)
    assert answer.status_code == 303 and answer.headers["location"] == "/account", answer.text
    assert not signed_out(browser.client)


# --- signatures ------------------------------------------------------------------------------


def test_anything_but_our_idps_sha256_signature_is_refused(
    saml_browser: SamlBrowser, fake_idp: FakeIdp, other_idp: FakeIdp
) -> None:
    b, refusals = saml_browser, Refusals()

    def unsigned(request: AuthnRequest) -> str:
        return forge.to_b64(forge.build_response(b.claims(request)))

    def only_response_signed(request: AuthnRequest) -> str:
        response = forge.build_response(b.claims(request))
        return forge.to_b64(forge.sign_response(response, fake_idp.keys))

    def another_key(request: AuthnRequest) -> str:
        """Our IdP's name, an attacker's key (its certificate in KeyInfo, as attackers send)."""
        return b.signed(other_idp, b.claims(request))

    def another_idp(request: AuthnRequest) -> str:
        """Honestly signed by another IdP, under its own name."""
        return b.signed(other_idp, b.claims(request, issuer=other_idp.entity_id))

    def another_issuer(request: AuthnRequest) -> str:
        """Our IdP's key, another IdP's name."""
        return b.signed(fake_idp, b.claims(request, issuer=other_idp.entity_id))

    forgeries: list[Forgery] = [
        unsigned,
        only_response_signed,
        another_key,
        another_idp,
        another_issuer,
    ]
    for forged in forgeries:
        request = b.start()
        refuse(b, refusals, request, forged(request), "invalid", forged.__name__)
    algorithms: list[tuple[forge.SignatureAlgorithm, forge.DigestAlgorithm]] = [
        ("rsa-sha1", "sha256"),
        ("rsa-sha256", "sha1"),
        ("rsa-sha1", "sha1"),
    ]
    for algorithm, digest in algorithms:
        request = b.start()
        response = forge.build_response(b.claims(request))
        forge.sign_assertion(response, fake_idp.keys, algorithm=algorithm, digest=digest)
        # A genuine signature by our IdP, refused only for its SHA-1.
        assert forge.verify_signatures(response, fake_idp.keys.cert_pem) == [True]
        refuse(b, refusals, request, forge.to_b64(response), "invalid", f"{algorithm}/{digest}")
    assert user("alice@corp.example") is None
    honest_sign_in_works(b, fake_idp)


@pytest.mark.parametrize(
    "variants", [(1, 2), (3, 4, 5, 6, 7, 8)], ids=["XSW1-2-response", "XSW3-8-assertion"]
)
def test_signature_wrapping_is_refused(
    saml_browser: SamlBrowser, fake_idp: FakeIdp, variants: tuple[int, ...]
) -> None:
    """A genuine response for alice (a plain member), rewrapped to carry an unsigned one for
    the CEO in the admins group; the genuine signature still verifies. XSW1-2 wrap a signed
    Response, XSW3-8 a signed Assertion (see ``forge.xsw``)."""
    b, refusals = saml_browser, Refusals()
    for variant in variants:
        request = b.start()
        honest = forge.sign_assertion(forge.build_response(b.claims(request)), fake_idp.keys)
        if variant in (1, 2):
            forge.sign_response(honest, fake_idp.keys)
        evil = b.claims(request, name_id="ceo@corp.example", attributes=EVIL)
        wrapped = forge.xsw(variant, honest, evil)
        assert all(forge.reference_digests_match(wrapped)), variant
        refuse(b, refusals, request, forge.to_b64(wrapped), "invalid", f"XSW{variant}")
    assert user("ceo@corp.example") is None
    assert user("alice@corp.example") is None
    honest_sign_in_works(b, fake_idp)


def test_comment_in_name_id_does_not_sign_in_the_truncated_address(
    app: Flask, saml_browser: SamlBrowser, fake_idp: FakeIdp
) -> None:
    """The attacker owns admin@corp.example.evil.example at an IdP the connection trusts, and
    splits its NameID with a comment after the IdP signed: a naive reader sees
    admin@corp.example. Without an email attribute, the NameID is the address we use."""
    admin = make_user(app, "admin@corp.example", role="admin", name="Real Admin")
    request = saml_browser.start()
    claims = saml_browser.claims(
        request, name_id="admin@corp.example.evil.example", attributes={"groups": ["admins"]}
    )
    response = forge.sign_assertion(forge.build_response(claims), fake_idp.keys)
    forge.inject_comment_in_name_id(response, after="admin@corp.example")
    assert forge.verify_signatures(response, fake_idp.keys.cert_pem) == [True]
    answer = saml_browser.post(forge.to_b64(response), request.relay_state)
    assert_refused(answer, saml_browser.client, "foreign_domain", "evil.example")
    assert identities() == []  # nothing linked to the real admin
    assert user("admin@corp.example.evil.example") is None
    real = user("admin@corp.example")
    assert real is not None and real.id == admin.id


def test_dtds_and_entities_are_refused(saml_browser: SamlBrowser, fake_idp: FakeIdp) -> None:
    b, refusals = saml_browser, Refusals()
    for entity in ("file:///etc/hostname", "http://127.0.0.1:9/xxe", None):
        request = b.start()
        response = forge.build_response(b.claims(request))
        signed = forge.to_bytes(forge.sign_assertion(response, fake_idp.keys))
        hostile = forge.to_b64(forge.with_doctype(signed, entity))
        refuse(b, refusals, request, hostile, "malformed", f"DOCTYPE {entity}")
    assert user("alice@corp.example") is None


# --- addressing: audience, recipient, destination ------------------------------------------


def test_responses_addressed_elsewhere_are_refused(
    saml_browser: SamlBrowser, fake_idp: FakeIdp
) -> None:
    b, refusals = saml_browser, Refusals()
    acs = b.acs_url
    cases = [
        ("audience", "https://other-sp.example/saml/metadata", "invalid"),
        ("audience", acs, "invalid"),  # our ACS is not our entity ID
        ("recipient", "https://other-sp.example/acs", "invalid"),
        ("destination", "https://other-sp.example/acs", "invalid"),
        # python3-saml accepts these (a prefix and a substring match); we compare exactly.
        ("destination", f"{acs}.evil.example/acs", "wrong_destination"),
        ("destination", f"{acs}/evil", "wrong_destination"),
        ("recipient", f"https://other-sp.example/acs?{acs}", "wrong_recipient"),
        ("recipient", f"{acs}.evil.example", "wrong_recipient"),
    ]
    for field, value, reason in cases:
        request = b.start()
        forged = b.signed(fake_idp, b.claims(request, **{field: value}))
        refuse(b, refusals, request, forged, reason, f"{field}={value}")
    assert user("alice@corp.example") is None
    honest_sign_in_works(b, fake_idp)


# --- time --------------------------------------------------------------------------------------


def test_assertions_outside_their_validity_are_refused_within_the_skew_accepted(
    saml_browser: SamlBrowser, fake_idp: FakeIdp
) -> None:
    """python3-saml reads the wall clock, so the IdP's ``now`` is shifted from it: an assertion
    (valid 300 s) that expired a minute beyond the skew, or starts a minute beyond it, is
    refused; a minute of skew is not."""
    b, refusals = saml_browser, Refusals()
    for label, shift in (("expired", -(300 + SKEW + 60)), ("not yet valid", SKEW + 60)):
        request = b.start()
        forged = b.signed(fake_idp, b.claims(request, now=time.time() + shift))
        refuse(b, refusals, request, forged, "invalid", label)
    assert user("alice@corp.example") is None
    # Within the skew: the IdP's clock a minute ahead, then a minute behind.
    for shift in (60, -60):
        request = b.start()
        claims = b.claims(request, now=time.time() + shift)
        answer = b.post(b.signed(fake_idp, claims), request.relay_state)
        assert answer.status_code == 303, (shift, answer.text)
    assert rejections() == ["invalid", "invalid"]
    assert not signed_out(b.client)


# --- binding to this browser's request ------------------------------------------------------


def test_unsolicited_response_is_accepted_once_when_idp_initiated_is_allowed(
    app: Flask, fake_idp: FakeIdp, base_url: str, browser_client: httpx.Client
) -> None:
    connect(app, fake_idp, allow_idp_initiated=True)
    browser = SamlBrowser(browser_client, base_url, "corp")
    response = browser.signed(fake_idp, browser.claims(None))
    answer = browser.post(response, "")
    assert answer.status_code == 303 and answer.headers["location"] == "/account", answer.text
    assert not signed_out(browser.client)
    with new_browser(base_url) as other:
        replayed = SamlBrowser(other, base_url, "corp").post(response, "")
        assert_refused(replayed, other, "replay")


def test_response_is_good_once_and_only_in_the_browser_that_asked(
    saml_browser: SamlBrowser, second_browser: SamlBrowser, fake_idp: FakeIdp
) -> None:
    """Browser A started a sign-in; its answer, posted from browser B (which has a pending
    request of its own), signs nobody in, with B's relay or with A's. A gets in with it once:
    replayed afterwards, from B or from A, it answers a request already used up."""
    theirs = saml_browser.start()
    mine = second_browser.start()
    response = second_browser.signed(fake_idp, second_browser.claims(theirs))
    refusals = Refusals()
    for relay, reason in ((mine.relay_state, "invalid"), (theirs.relay_state, "unsolicited")):
        answer = second_browser.post(response, relay)
        refusals.check(answer, second_browser.client, reason, label=f"B with {reason} relay")
    # A's request is still pending in A's session, and A still gets in with the answer.
    assert saml_browser.post(response, theirs.relay_state).status_code == 303
    assert not signed_out(saml_browser.client)
    replayed = second_browser.post(response, theirs.relay_state)
    refusals.check(replayed, second_browser.client, "unsolicited", label="replayed by B")
    again = saml_browser.post(response, theirs.relay_state)
    assert again.status_code == 400
    assert_plain_refusal(again)
    assert rejections() == ["invalid", "unsolicited", "unsolicited", "unsolicited"]


def test_responses_answering_no_request_of_this_browser_are_refused(
    saml_browser: SamlBrowser, fake_idp: FakeIdp
) -> None:
    b, refusals = saml_browser, Refusals()

    def other_request_in_assertion(request: AuthnRequest, keep_response_irt: bool) -> str:
        """Signed by our IdP, but the assertion answers someone else's request."""
        response = forge.build_response(b.claims(request))
        data = forge.assertion_of(response).find(".//saml:SubjectConfirmationData", NSMAP)
        assert data is not None
        data.set("InResponseTo", "_someone-elses-request")
        if not keep_response_irt:
            del response.attrib["InResponseTo"]
        return forge.to_b64(forge.sign_assertion(response, fake_idp.keys))

    # The Response answers our request, the signed assertion another one.
    request = b.start()
    forged = other_request_in_assertion(request, keep_response_irt=True)
    refuse(b, refusals, request, forged, "invalid", "assertion irt")
    # No InResponseTo on the Response: python3-saml never compares the assertion's with our
    # request, so our own check must.
    request = b.start()
    forged = other_request_in_assertion(request, keep_response_irt=False)
    refuse(b, refusals, request, forged, "wrong_in_response_to", "assertion irt only")
    # An unsolicited answer posted with this browser's relay: it answers no request.
    request = b.start()
    forged = b.signed(fake_idp, b.claims(None))
    refuse(b, refusals, request, forged, "wrong_in_response_to", "no irt at all")
    # The same, posted without a relay: unsolicited, and IdP-initiated sign-in is off.
    answer = b.post(b.signed(fake_idp, b.claims(None)), "")
    refusals.check(answer, b.client, "unsolicited", label="unsolicited")
    assert user("alice@corp.example") is None


# --- who the assertion names ------------------------------------------------------------------


def test_people_the_connection_does_not_speak_for_are_refused(
    app: Flask, saml_browser: SamlBrowser, fake_idp: FakeIdp
) -> None:
    """An address outside its domains, a disabled account, and an account that belongs to
    another organisation: acme's IdP signs none of them in, and links nothing."""
    b, refusals = saml_browser, Refusals()
    make_user(app, "carol@corp.example", org_slug="globex")
    dave = make_user(app, "dave@corp.example")
    dave.is_active = False
    db.session.commit()
    for address, reason in (
        ("mallory@other.example", "foreign_domain"),
        ("mallory@corp.example.evil.example", "foreign_domain"),
        ("dave@corp.example", "disabled"),
        ("carol@corp.example", "account_not_member"),
    ):
        request = b.start()
        attributes = {"email": [address], "groups": ["admins"]}
        forged = b.signed(fake_idp, b.claims(request, name_id=address, attributes=attributes))
        refuse(b, refusals, request, forged, reason, address)
    # A NameID on the domain does not excuse an address attribute off it.
    request = b.start()
    attributes = {"email": ["ceo@other.example"], "groups": ["admins"]}
    forged = b.signed(fake_idp, b.claims(request, attributes=attributes))
    refuse(b, refusals, request, forged, "foreign_domain", "address attribute")
    assert user("mallory@other.example") is None
    carol = user("carol@corp.example")
    assert carol is not None and orgs.membership(carol, orgs.get("acme")) is None
    assert identities() == []


# --- what is accepted -----------------------------------------------------------------------


def test_encrypted_assertion_is_accepted(
    saml_browser: SamlBrowser, fake_idp: FakeIdp, connection: SamlConnection
) -> None:
    ciphers: list[forge.Cipher] = ["aes256-cbc", "aes128-gcm"]
    for cipher in ciphers:
        request = saml_browser.start()
        response = forge.build_response(saml_browser.claims(request))
        forge.sign_assertion(response, fake_idp.keys)
        forge.encrypt_assertion(response, connection.sp_certificate, cipher=cipher)
        assert b"alice@" not in forge.to_bytes(response)
        answer = saml_browser.post(forge.to_b64(response), request.relay_state)
        assert answer.status_code == 303, (cipher, answer.text)
    assert rejections() == []
    assert user("alice@corp.example") is not None
    assert not signed_out(saml_browser.client)


# --- what is not a response at all ------------------------------------------------------------


def test_what_is_not_a_response_is_refused_plainly(
    saml_browser: SamlBrowser, fake_idp: FakeIdp
) -> None:
    b, refusals = saml_browser, Refusals()
    cases = [
        ("not base64", "%%% not base64 %%%", "no_response"),
        ("not XML", base64.b64encode(b"this is not XML").decode(), "no_response"),
        ("binary", base64.b64encode(b"\x00\xff" * 64).decode(), "no_response"),
        ("empty", "", "no_response"),
        (
            "broken XML",
            base64.b64encode(b"<samlp:Response xmlns:samlp='urn:x'><unclosed>").decode(),
            "malformed",
        ),
        ("wrong root", base64.b64encode(etree.tostring(etree.Element("html"))).decode(), "invalid"),
        ("huge", "A" * (300 * 1024), "no_response"),
    ]
    for label, payload, reason in cases:
        refuse(b, refusals, b.start(), payload, reason, label)
    # Over the request size limit, the web layer refuses it before any SAML code runs.
    request = b.start()
    answer = b.post("A" * (2 * 1024 * 1024), request.relay_state)
    assert answer.status_code == 413
    assert_plain_refusal(answer)
    assert signed_out(b.client)
    # An unknown, or already used, reference to a parked answer.
    for ref in ("", "unknown-reference", "x" * 200):
        answer = b.client.get(f"/saml/{b.slug}/acs", params={"r": ref})
        refusals.check(answer, b.client, "stale", label=ref)
    request = b.start()
    posted = b.client.post(
        f"/saml/{b.slug}/acs",
        data={
            "SAMLResponse": b.signed(fake_idp, b.claims(request)),
            "RelayState": request.relay_state,
        },
    )
    assert posted.status_code == 303
    assert b.client.get(posted.headers["location"]).status_code == 303
    b.client.cookies.clear()
    again = b.client.get(posted.headers["location"])
    refusals.check(again, b.client, "stale", label="used twice")
