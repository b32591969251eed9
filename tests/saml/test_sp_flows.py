"""SP flows beyond the first sign-in: updates on later sign-ins, linking existing members, where
the browser lands, what the session records, our metadata and home-realm discovery."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import httpx
from flask import Flask
from lxml import etree

from idp.common.store import Store
from idp.models import SamlConnection
from idp.services import orgs
from tests.saml.checks import events, identities, rejections, session_record, sign_in, user
from tests.saml.support import IDP_SSO_URL, FakeIdp, SamlBrowser, cert_body
from tests.support import STRONG_PASSWORD, make_user, post_form
from tests.support import sign_in as password_sign_in

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
AC = "urn:oasis:names:tc:SAML:2.0:ac:classes:"


def attributes(given: str = "Alice", groups: tuple[str, ...] = ("staff",)) -> dict[str, list[str]]:
    return {
        "email": ["alice@corp.example"],
        "givenName": [given],
        "sn": ["Liddell"],
        "groups": list(groups),
    }


def role_of(email: str) -> str:
    found = user(email)
    assert found is not None
    member = orgs.membership(found, orgs.get("acme"))
    assert member is not None
    return str(member.role.name)


def last_login_changes() -> dict[str, object]:
    details = events("saml.login")[-1].details
    assert isinstance(details, dict)
    changes = details["changes"]
    assert isinstance(changes, dict)
    return changes


# --- later sign-ins --------------------------------------------------------------------------


def test_later_sign_in_updates_name_and_downgrades_a_removed_group(
    saml_browser: SamlBrowser, fake_idp: FakeIdp
) -> None:
    first = sign_in(saml_browser, fake_idp, attributes=attributes(groups=("staff", "admins")))
    assert first.status_code == 303, first.text
    assert role_of("alice@corp.example") == "admin"
    again = sign_in(saml_browser, fake_idp, attributes=attributes(given="Alicia"))
    assert again.status_code == 303, again.text
    alice = user("alice@corp.example")
    assert alice is not None and alice.name == "Alicia Liddell"
    assert role_of("alice@corp.example") == "member"  # the connection's default role
    assert last_login_changes() == {
        "name": {"before": "Alice Liddell", "after": "Alicia Liddell"},
        "role": {"before": "admin", "after": "member"},
    }
    assert len(identities()) == 1  # the same NameID, the same account


def test_the_last_owner_is_never_demoted_by_the_idp(
    app: Flask, saml_browser: SamlBrowser, fake_idp: FakeIdp
) -> None:
    make_user(app, "alice@corp.example", role="owner", name="Alice Liddell")
    assert sign_in(saml_browser, fake_idp).status_code == 303  # groups map to "member"
    assert role_of("alice@corp.example") == "owner"
    assert last_login_changes() == {"role_kept": {"role": "owner", "why": "last owner"}}
    # With another owner, the IdP's word holds again.
    make_user(app, "bob@corp.example", role="owner", name="Bob")
    assert sign_in(saml_browser, fake_idp).status_code == 303
    assert role_of("alice@corp.example") == "member"
    assert last_login_changes() == {"role": {"before": "owner", "after": "member"}}


def test_existing_member_is_linked_on_first_sign_in_and_keeps_the_password(
    app: Flask, saml_browser: SamlBrowser, fake_idp: FakeIdp, base_url: str
) -> None:
    alice = make_user(app, "alice@corp.example", name="Alice Liddell")
    password_hash = alice.password_hash
    assert sign_in(saml_browser, fake_idp).status_code == 303
    linked = identities()
    assert [(i.user_id, i.name_id) for i in linked] == [(alice.id, "alice@corp.example")]
    assert events("saml.login")[-1].details["created"] is False
    after = user("alice@corp.example")
    assert after is not None and after.password_hash == password_hash
    assert role_of("alice@corp.example") == "member"
    with httpx.Client(base_url=base_url, timeout=30) as other:  # SSO is not enforced here
        assert password_sign_in(other, "alice@corp.example", STRONG_PASSWORD).status_code == 303


# --- where the browser lands, what the session says -------------------------------------------


def test_where_the_browser_lands_and_what_the_session_records(
    saml_browser: SamlBrowser, fake_idp: FakeIdp, store: Store
) -> None:
    """``next`` is followed only to our own pages; the session says the IdP signed the person
    in (``ext``) and what its AuthnContext claims, and keeps what single logout needs."""
    for asked, landed in (
        ("/account/sessions", "/account/sessions"),
        ("https://evil.example/steal", "/account"),
        ("//evil.example/steal", "/account"),
        ("/\\evil.example", "/account"),
    ):
        answer = sign_in(saml_browser, fake_idp, next_url=asked)
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == landed, asked
    for context, amr in (
        (f"{AC}PasswordProtectedTransport", ["ext", "pwd"]),
        (f"{AC}MobileTwoFactorContract", ["ext", "mfa"]),
        ("urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified", ["ext"]),
    ):
        answer = sign_in(
            saml_browser, fake_idp, authn_context_class_ref=context, session_index="_idx-1"
        )
        assert answer.status_code == 303, answer.text
        record = session_record(saml_browser.client, store)
        assert record["amr"] == amr, context
        assert record["data"]["saml"]["session_index"] == "_idx-1"
        assert record["data"]["saml"]["conn"] == "corp"
    assert saml_browser.client.get("/account/sessions").status_code == 200
    assert rejections() == []


# --- our metadata, unknown connections ---------------------------------------------------------


def test_sp_metadata_describes_the_connection_and_unknown_ones_are_not_found(
    saml_browser: SamlBrowser, connection: SamlConnection, base_url: str
) -> None:
    answer = saml_browser.client.get("/saml/corp/metadata")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/samlmetadata+xml")
    assert "PRIVATE" not in answer.text
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.fromstring(answer.content, parser)
    assert root.tag == f"{{{MD}}}EntityDescriptor"
    assert root.get("entityID") == f"{base_url}/saml/corp/metadata"
    ns = {"md": MD, "ds": DS}
    acs = root.find(".//md:SPSSODescriptor/md:AssertionConsumerService", ns)
    assert acs is not None
    assert acs.get("Location") == f"{base_url}/saml/corp/acs"
    assert acs.get("Binding") == "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
    sls = root.find(".//md:SPSSODescriptor/md:SingleLogoutService", ns)
    assert sls is not None and sls.get("Location") == f"{base_url}/saml/corp/sls"
    certificates = [c.text.strip() for c in root.iterfind(".//ds:X509Certificate", ns) if c.text]
    assert cert_body(connection.sp_certificate) in certificates

    client = saml_browser.client
    for slug in ("nope", "Corp", "corp--", "a" * 80):
        for answer in (
            client.get(f"/saml/{slug}/metadata"),
            client.get(f"/saml/{slug}/login"),
            client.get(f"/saml/{slug}/acs", params={"r": "x"}),
            client.post(f"/saml/{slug}/acs", data={"SAMLResponse": "PHg+", "RelayState": ""}),
            client.get(f"/saml/{slug}/sls", params={"SAMLRequest": "x", "Signature": "x"}),
        ):
            assert answer.status_code == 404, (slug, answer.request.url, answer.status_code)
            assert "Traceback" not in answer.text


# --- home-realm discovery ---------------------------------------------------------------------

_CONTINUE = re.compile(r'<a id="continue" href="([^"]+)"')
_REFRESH = re.compile(r'<meta http-equiv="refresh" content="0;url=([^"]+)">')


def test_discovery_sends_an_address_to_its_domains_idp_or_says_there_is_none(
    saml_browser: SamlBrowser, connection: SamlConnection
) -> None:
    client = saml_browser.client
    answer = post_form(client, "/sso", {"email": " Bob@CORP.example ", "next": "/account/apps"})
    assert answer.status_code == 200, answer.text
    link = _CONTINUE.search(answer.text)
    refresh = _REFRESH.search(answer.text)
    assert link and refresh
    target = html.unescape(link.group(1))
    assert html.unescape(refresh.group(1)) == target
    parts = urlsplit(target)
    assert parts.path == "/saml/corp/login" and not parts.netloc
    assert parse_qs(parts.query) == {"next": ["/account/apps"]}
    onward = client.get(target)
    assert onward.status_code == 303
    assert onward.headers["location"].startswith(IDP_SSO_URL)
    for email in ("bob@elsewhere.example", "not-an-address", "bob@corp.example.evil.example"):
        answer = post_form(client, "/sso", {"email": email})
        assert answer.status_code == 404, email
        assert "Single sign-on is not set up for this address" in answer.text
        assert "/saml/corp/login" not in answer.text
