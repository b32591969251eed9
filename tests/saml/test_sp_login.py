"""SP-initiated sign-in through a forged (but honest) IdP: JIT, updates, roles, sign-in."""

from __future__ import annotations

from idp.extensions import db
from idp.models import AuditEvent
from idp.services import orgs, users
from tests.saml.support import FakeIdp, SamlBrowser


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
