"""The forging toolkit checked against python3-saml, the library our ACS builds on.

An attack test only means something if the honest forgery passes and each hostile one fails for
the reason it was built for. So the honest responses must be accepted, and each attack is refused
with the python3-saml error *code* naming that reason (not a schema or signature error caused by
a clumsy forgery). The `test_gap_*` tests record what python3-saml does *not* refuse, each of
which our SP has to refuse itself.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from onelogin.saml2.errors import OneLogin_Saml2_ValidationError as ValidationError
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xmlparser import DTDForbidden

from tests.saml.forge import (
    ACS_URL,
    IDP_ENTITY_ID,
    NAMEID_EMAIL,
    NS_DS,
    NS_SAML,
    NSMAP,
    SP_ENTITY_ID,
    Cipher,
    Claims,
    DigestAlgorithm,
    KeyPair,
    SignatureAlgorithm,
    assertion_of,
    build_response,
    encrypt_assertion,
    inject_comment_in_name_id,
    make_key_pair,
    reference_digests_match,
    sign_assertion,
    sign_response,
    to_b64,
    to_bytes,
    verify_signatures,
    with_doctype,
    xsw,
)

NOW = 1_900_000_000  # python3-saml's clock is frozen here; forged Claims use the same instant
REQUEST_ID = "_bascule-authn-request-1"
# What python3-saml derives the ACS URL from; our SP will build it from BASCULE_ISSUER.
REQUEST_DATA = {
    "https": "on",
    "http_host": "bascule.example.test",
    "script_name": "",
    "path_info": "/saml/acs",
}


@pytest.fixture(scope="module")
def idp() -> KeyPair:
    return make_key_pair("test-idp")


@pytest.fixture(scope="module")
def sp() -> KeyPair:
    return make_key_pair("bascule-sp")


@pytest.fixture(scope="module")
def stranger() -> KeyPair:
    return make_key_pair("test-idp")  # same name, different key: only the key may count


@pytest.fixture(autouse=True)
def frozen_saml_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """python3-saml reads the wall clock through `OneLogin_Saml2_Utils.now`; freeze it."""
    monkeypatch.setattr(OneLogin_Saml2_Utils, "now", staticmethod(lambda: NOW))


def honest_claims(**changes: Any) -> Claims:
    claims = Claims(
        now=NOW,
        in_response_to=REQUEST_ID,
        attributes={"email": ["alice@corp.example"], "groups": ["staff"]},
    )
    return dataclasses.replace(claims, **changes)


def sp_settings(idp: KeyPair, sp: KeyPair, **security: bool) -> OneLogin_Saml2_Settings:
    """The SP settings our ACS will use: strict, signed assertions, no SHA-1, full IdP cert."""
    return OneLogin_Saml2_Settings(
        {
            "strict": True,
            "debug": False,
            "sp": {
                "entityId": SP_ENTITY_ID,
                "assertionConsumerService": {
                    "url": ACS_URL,
                    "binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
                },
                "NameIDFormat": NAMEID_EMAIL,
                "x509cert": sp.cert_pem,
                "privateKey": sp.private_key_pem,
            },
            "idp": {
                "entityId": IDP_ENTITY_ID,
                "singleSignOnService": {
                    "url": "https://idp.example.test/saml/sso",
                    "binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect",
                },
                "x509cert": idp.cert_pem,
            },
            "security": {
                "wantAssertionsSigned": True,
                "wantMessagesSigned": False,
                "rejectDeprecatedAlgorithm": True,
                **security,
            },
        },
        sp_validation_only=True,
    )


def accept(
    settings: OneLogin_Saml2_Settings,
    document: etree._Element | bytes,
    request_id: str | None = REQUEST_ID,
) -> OneLogin_Saml2_Response:
    """Parse and validate as the ACS will; raises whatever python3-saml raises."""
    response = OneLogin_Saml2_Response(settings, to_b64(document))
    assert response.is_valid(REQUEST_DATA, request_id, raise_exceptions=True)
    return response


def refusal_code(settings: OneLogin_Saml2_Settings, document: etree._Element) -> int:
    """Validate, expect a refusal, and return python3-saml's error code for it."""
    with pytest.raises(ValidationError) as refused:
        accept(settings, document)
    return refused.value.code


# --- the honest path -------------------------------------------------------------------------


def test_signed_assertion_is_accepted(idp: KeyPair, sp: KeyPair) -> None:
    claims = honest_claims()
    response = accept(sp_settings(idp, sp), sign_assertion(build_response(claims), idp))
    assert response.get_nameid() == "alice@corp.example"
    assert response.get_attributes() == {"email": ["alice@corp.example"], "groups": ["staff"]}
    assert response.get_session_index() == claims.session_index
    assert response.get_assertion_id() == claims.assertion_id  # the key for our replay cache
    assert response.get_assertion_not_on_or_after() == NOW + claims.lifetime


def test_signed_response_and_assertion_is_accepted(idp: KeyPair, sp: KeyPair) -> None:
    response = sign_response(sign_assertion(build_response(honest_claims()), idp), idp)
    assert verify_signatures(response, idp.cert_pem) == [True, True]
    assert accept(sp_settings(idp, sp, wantMessagesSigned=True), response).get_nameid()


@pytest.mark.parametrize("cipher", ["aes256-cbc", "aes128-gcm"])
def test_encrypted_signed_assertion_is_accepted(idp: KeyPair, sp: KeyPair, cipher: Cipher) -> None:
    response = sign_assertion(build_response(honest_claims()), idp)
    encrypt_assertion(response, sp.cert_pem, cipher=cipher)
    assert response.find(f"{{{NS_SAML}}}Assertion") is None
    settings = sp_settings(idp, sp, wantAssertionsEncrypted=True)
    assert accept(settings, response).get_nameid() == "alice@corp.example"


# --- attacks python3-saml refuses ------------------------------------------------------------


def test_unsigned_assertion_is_refused(idp: KeyPair, sp: KeyPair) -> None:
    code = refusal_code(sp_settings(idp, sp), build_response(honest_claims()))
    assert code == ValidationError.NO_SIGNED_ASSERTION


def test_signed_response_with_unsigned_assertion_is_refused(idp: KeyPair, sp: KeyPair) -> None:
    """A signed envelope does not vouch for the assertion when we demand assertion signatures."""
    response = sign_response(build_response(honest_claims()), idp)
    assert refusal_code(sp_settings(idp, sp), response) == ValidationError.NO_SIGNED_ASSERTION


def test_assertion_signed_by_another_key_is_refused(
    idp: KeyPair, sp: KeyPair, stranger: KeyPair
) -> None:
    """The stranger's certificate rides in KeyInfo; only the configured IdP certificate counts."""
    response = sign_assertion(build_response(honest_claims()), stranger)
    assert verify_signatures(response, stranger.cert_pem) == [True]
    assert refusal_code(sp_settings(idp, sp), response) == ValidationError.INVALID_SIGNATURE


@pytest.mark.parametrize(
    ("algorithm", "digest", "code"),
    [
        ("rsa-sha1", "sha1", ValidationError.DEPRECATED_SIGNATURE_METHOD),
        ("rsa-sha256", "sha1", ValidationError.DEPRECATED_DIGEST_METHOD),
    ],
)
def test_sha1_signature_is_refused(
    idp: KeyPair, sp: KeyPair, algorithm: SignatureAlgorithm, digest: DigestAlgorithm, code: int
) -> None:
    response = build_response(honest_claims())
    sign_assertion(response, idp, algorithm=algorithm, digest=digest)
    # Cryptographically sound, and accepted once the policy is off: the policy is what refuses.
    assert verify_signatures(response, idp.cert_pem) == [True]
    assert accept(sp_settings(idp, sp, rejectDeprecatedAlgorithm=False), response)
    assert refusal_code(sp_settings(idp, sp), response) == code


# A naive SP reads the first match of this XPath; each variant puts the evil Assertion there.
NAIVE_READ = {v: "/samlp:Response/saml:Assertion" for v in range(1, 9)} | {7: "//saml:Assertion"}


@pytest.mark.parametrize("variant", range(1, 9), ids=lambda v: f"XSW{v}")
def test_signature_wrapping_is_refused(idp: KeyPair, sp: KeyPair, variant: int) -> None:
    signed = sign_assertion(build_response(honest_claims()), idp)
    if variant in (1, 2):
        sign_response(signed, idp)
    evil_claims = honest_claims(name_id="admin@corp.example", attributes={"groups": ["admins"]})
    wrapped = xsw(variant, signed, evil_claims)

    naive = wrapped.xpath(NAIVE_READ[variant], namespaces=NSMAP)[0]
    assert naive.findtext("saml:Subject/saml:NameID", namespaces=NSMAP) == "admin@corp.example"
    # Every reference still hashes to its signed digest: the forgery itself is exact.
    assert all(reference_digests_match(wrapped))
    # xmlsec drops the whole Signature subtree in the enveloped transform, so an original placed
    # inside the Signature (1: the Response, 6 and 8: the Assertion) no longer verifies there.
    expected = {1: [False, True], 2: [True, True], 6: [False], 8: [False]}.get(variant, [True])
    assert verify_signatures(wrapped, idp.cert_pem) == expected

    code = refusal_code(sp_settings(idp, sp), wrapped)
    assert code == ValidationError.WRONG_NUMBER_OF_ASSERTIONS  # it counts //saml:Assertion


@pytest.mark.parametrize("entity", [None, "name.txt"], ids=["internal-dtd", "external-entity"])
def test_doctype_is_refused_before_anything_else(
    idp: KeyPair, sp: KeyPair, tmp_path: Path, entity: str | None
) -> None:
    target = tmp_path / "name.txt"
    target.write_text("admin@corp.example")
    signed = to_bytes(sign_assertion(build_response(honest_claims()), idp))
    hostile = with_doctype(signed, None if entity is None else target.as_uri())
    if entity is not None:  # the vector works on a parser that resolves entities
        permissive = etree.XMLParser(resolve_entities=True, load_dtd=True, no_network=True)
        resolved = etree.fromstring(hostile, permissive)
        assert resolved.findtext(".//saml:NameID", namespaces=NSMAP) == "admin@corp.example"
    with pytest.raises(DTDForbidden):  # raised while parsing, in the constructor
        OneLogin_Saml2_Response(sp_settings(idp, sp), to_b64(hostile))


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"audience": "https://other-sp.example.test/metadata"}, ValidationError.WRONG_AUDIENCE),
        ({"destination": "https://other-sp.example.test/acs"}, ValidationError.WRONG_DESTINATION),
        (
            {"recipient": "https://other-sp.example.test/acs"},
            ValidationError.WRONG_SUBJECTCONFIRMATION,
        ),
        ({"now": NOW - 3600}, ValidationError.ASSERTION_EXPIRED),
        ({"now": NOW + 3600}, ValidationError.ASSERTION_TOO_EARLY),
        ({"in_response_to": "_someone-elses-request"}, ValidationError.WRONG_INRESPONSETO),
        ({"issuer": "https://evil-idp.example.test/metadata"}, ValidationError.WRONG_ISSUER),
    ],
    ids=["audience", "destination", "recipient", "expired", "not-yet-valid", "irt", "issuer"],
)
def test_signed_but_wrong_claim_is_refused(
    idp: KeyPair, sp: KeyPair, changes: dict[str, Any], code: int
) -> None:
    response = sign_assertion(build_response(honest_claims(**changes)), idp)
    assert refusal_code(sp_settings(idp, sp), response) == code


def test_subject_confirmation_expiry_has_no_clock_drift(idp: KeyPair, sp: KeyPair) -> None:
    """Conditions get 300 s of drift but SubjectConfirmationData none, so it expires first."""
    response = sign_assertion(build_response(honest_claims(now=NOW - 301)), idp)
    assert refusal_code(sp_settings(idp, sp), response) == ValidationError.WRONG_SUBJECTCONFIRMATION


def test_subject_confirmation_for_another_request_is_refused(idp: KeyPair, sp: KeyPair) -> None:
    response = build_response(honest_claims())
    data = assertion_of(response).find(".//saml:SubjectConfirmationData", NSMAP)
    assert data is not None
    data.set("InResponseTo", "_someone-elses-request")
    sign_assertion(response, idp)
    code = refusal_code(sp_settings(idp, sp), response)
    assert code == ValidationError.WRONG_SUBJECTCONFIRMATION


def test_comment_in_name_id_does_not_truncate_it(idp: KeyPair, sp: KeyPair) -> None:
    """CVE-2017-11427 style: the comment is added after the IdP signed, and still verifies.

    python3-saml parses with comments removed, so it sees the whole, attacker-owned NameID.
    """
    response = build_response(honest_claims(name_id="admin@corp.example.evil.example"))
    commented_first = inject_comment_in_name_id(copy.deepcopy(response), "admin@corp.example")
    sign_assertion(response, idp)
    sign_assertion(commented_first, idp)
    inject_comment_in_name_id(response, after="admin@corp.example")
    assert b"admin@corp.example<!---->.evil.example" in to_bytes(response)
    assert verify_signatures(response, idp.cert_pem) == [True]
    # Before or after signing makes no difference: c14n without comments never covers it.
    digests = [
        r.findtext(".//ds:DigestValue", namespaces=NSMAP) for r in (response, commented_first)
    ]
    assert digests[0] == digests[1]
    name_id = assertion_of(response).find(".//saml:NameID", NSMAP)
    assert name_id is not None and name_id.text == "admin@corp.example"  # the naive reading
    accepted = accept(sp_settings(idp, sp), response)
    assert accepted.get_nameid() == "admin@corp.example.evil.example"


# --- gaps: python3-saml accepts these, so our SP must refuse them itself ---------------------


def test_gap_unsolicited_response_is_accepted(idp: KeyPair, sp: KeyPair) -> None:
    """No InResponseTo: the request id we pass is not compared with anything."""
    response = sign_assertion(build_response(honest_claims(in_response_to=None)), idp)
    assert accept(sp_settings(idp, sp), response).get_nameid() == "alice@corp.example"


def test_gap_subject_confirmation_for_another_request_without_response_irt(
    idp: KeyPair, sp: KeyPair
) -> None:
    """SubjectConfirmationData@InResponseTo is compared only with the Response's, never with
    our request id, so dropping it from the Response hides a mismatch."""
    response = build_response(honest_claims(in_response_to="_someone-elses-request"))
    del response.attrib["InResponseTo"]
    sign_assertion(response, idp)
    assert accept(sp_settings(idp, sp), response)


def test_gap_replayed_response_is_accepted(idp: KeyPair, sp: KeyPair) -> None:
    posted = to_b64(sign_assertion(build_response(honest_claims()), idp))
    settings = sp_settings(idp, sp)
    for _ in range(2):
        response = OneLogin_Saml2_Response(settings, posted)
        assert response.is_valid(REQUEST_DATA, REQUEST_ID, raise_exceptions=True)


@pytest.mark.parametrize(
    "changes",
    [
        {"destination": ACS_URL + ".evil.example/acs"},  # Destination: a prefix check
        {"recipient": "https://other-sp.example.test/acs?" + ACS_URL},  # Recipient: substring
    ],
    ids=["destination-prefix", "recipient-substring"],
)
def test_gap_loose_url_matching(idp: KeyPair, sp: KeyPair, changes: dict[str, str]) -> None:
    response = sign_assertion(build_response(honest_claims(**changes)), idp)
    assert accept(sp_settings(idp, sp), response)


# --- the toolkit itself ----------------------------------------------------------------------


def test_xsw_leaves_its_input_alone(idp: KeyPair) -> None:
    signed = sign_assertion(build_response(honest_claims()), idp)
    before = to_bytes(signed)
    xsw(5, signed, honest_claims(name_id="admin@corp.example"))
    assert to_bytes(signed) == before


def test_xsw_needs_the_signature_it_wraps(idp: KeyPair) -> None:
    assertion_signed = sign_assertion(build_response(honest_claims()), idp)
    with pytest.raises(ValueError, match="sign the Response first"):
        xsw(1, assertion_signed, honest_claims())
    with pytest.raises(ValueError, match="numbered 1 to 8"):
        xsw(9, assertion_signed, honest_claims())


def test_signature_sits_after_the_issuer(idp: KeyPair) -> None:
    """Schema order (Issuer, Signature, ...) is what python3-saml's strict mode validates."""
    response = sign_response(sign_assertion(build_response(honest_claims()), idp), idp)
    for signed in (response, assertion_of(response)):
        assert [child.tag for child in signed[:2]] == [
            f"{{{NS_SAML}}}Issuer",
            f"{{{NS_DS}}}Signature",
        ]
