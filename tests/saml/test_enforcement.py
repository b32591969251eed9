"""Enforced SSO: no password sign-in for the organisation's domains, except an owner's audited
break-glass password when the connection keeps one."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from flask import Flask

from idp.models import SamlConnection
from tests.saml.checks import events, signed_out
from tests.saml.conftest import connect
from tests.saml.support import IDP_SSO_URL, FakeIdp
from tests.support import OTHER_STRONG_PASSWORD, STRONG_PASSWORD, Browsers, make_user, sign_in

_SSO_LINK = re.compile(r'<a class="button" id="sso-continue" href="([^"]+)"')
# What differs between two answers by design: the form token and the address typed.
_VARYING = re.compile(r'(name="csrf_token"|name="email"[^>]*) value="[^"]*"')
SSO_MESSAGE = "Your organisation signs in with single sign-on, not with a password here."


@pytest.fixture
def browsers(base_url: str) -> Iterator[Browsers]:
    made = Browsers(base_url)
    yield made
    for browser in made.opened:
        browser.close()


def enforce(app: Flask, idp: FakeIdp, break_glass: bool) -> SamlConnection:
    return connect(app, idp, enforce_sso=True, owner_break_glass=break_glass)


def attempt(browsers: Browsers, email: str, password: str) -> tuple[httpx.Response, httpx.Client]:
    browser = browsers.new()
    return sign_in(browser, email, password, next_url="/account/sessions"), browser


def assert_sent_to_sso(answer: httpx.Response, browser: httpx.Client) -> str:
    """The 403 page: the message and a link to the connection's sign-in; nobody signed in.
    Returns the page without its CSRF token, to compare answers."""
    assert answer.status_code == 403, answer.text
    assert SSO_MESSAGE in answer.text
    link = _SSO_LINK.search(answer.text)
    assert link is not None
    target = urlsplit(link.group(1).replace("&amp;", "&"))
    assert target.path == "/saml/corp/login"
    assert parse_qs(target.query) == {"next": ["/account/sessions"]}
    assert signed_out(browser)
    return _VARYING.sub(r"\1", answer.text)


def test_password_sign_in_for_the_domain_is_sent_to_sso(
    app: Flask, fake_idp: FakeIdp, browsers: Browsers
) -> None:
    """The same answer whether the password is right, wrong, or the account does not exist."""
    alice = make_user(app, "alice@corp.example", name="Alice Liddell")
    enforce(app, fake_idp, break_glass=True)
    pages = []
    for email, password in (
        ("alice@corp.example", STRONG_PASSWORD),
        ("alice@corp.example", OTHER_STRONG_PASSWORD),
        ("ALICE@corp.example ", STRONG_PASSWORD),
        ("nobody@corp.example", STRONG_PASSWORD),
    ):
        answer, browser = attempt(browsers, email, password)
        page = assert_sent_to_sso(answer, browser)
        pages.append(page)
    assert len(set(pages)) == 1  # no enumeration: one page for all
    refused = events("login.sso_required")
    assert [(e.actor_email, e.target, e.outcome) for e in refused] == [
        ("alice@corp.example", "corp", "failure"),
        ("alice@corp.example", "corp", "failure"),
        ("alice@corp.example", "corp", "failure"),
        ("nobody@corp.example", "corp", "failure"),
    ]
    assert refused[0].actor_id == alice.id
    # Only the wrong password and the unknown address count as failed sign-ins (for lockout);
    # the right one is refused without counting against the person.
    failures = events("login.failure")
    assert [e.details["reason"] for e in failures] == ["bad_password", "unknown_user"]
    assert events("login.success") == [] and events("login.break_glass") == []
    # The link leads on to the IdP.
    link = _SSO_LINK.search(answer.text)
    assert link is not None
    onward = browser.get(link.group(1).replace("&amp;", "&"))
    assert onward.status_code == 303 and onward.headers["location"].startswith(IDP_SSO_URL)


def test_owner_break_glass_password_signs_in_audited_and_a_wrong_one_counts_toward_lockout(
    app: Flask, fake_idp: FakeIdp, browsers: Browsers
) -> None:
    olive = make_user(app, "olive@corp.example", role="owner", name="Olive Owner")
    enforce(app, fake_idp, break_glass=True)
    answer, browser = attempt(browsers, "olive@corp.example", STRONG_PASSWORD)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/account/sessions"
    assert not signed_out(browser)
    used = events("login.break_glass")
    assert len(used) == 1
    assert (used[0].actor_id, used[0].target, used[0].outcome) == (olive.id, "corp", "success")
    assert used[0].details == {"reason": "owner password while SSO is enforced"}
    assert events("login.sso_required") == []

    # A wrong password gets everyone's answer, and counts as a failed sign-in.
    limit = app.extensions["bascule"].settings.login_max_failures
    for _ in range(limit):
        answer, browser = attempt(browsers, "olive@corp.example", OTHER_STRONG_PASSWORD)
        assert_sent_to_sso(answer, browser)
    failures = events("login.failure")
    assert [e.details["reason"] for e in failures] == ["bad_password"] * limit
    assert len(events("login.lockout")) == 1
    answer, browser = attempt(browsers, "olive@corp.example", STRONG_PASSWORD)
    assert answer.status_code == 429  # locked: even the right password waits
    assert signed_out(browser)
    assert len(events("login.break_glass")) == 1


def test_without_break_glass_the_owner_is_sent_to_sso_too_other_domains_are_not(
    app: Flask, fake_idp: FakeIdp, browsers: Browsers
) -> None:
    make_user(app, "olive@corp.example", role="owner", name="Olive Owner")
    enforce(app, fake_idp, break_glass=False)
    answer, browser = attempt(browsers, "olive@corp.example", STRONG_PASSWORD)
    assert_sent_to_sso(answer, browser)
    assert len(events("login.sso_required")) == 1
    assert events("login.break_glass") == [] and events("login.success") == []
    # Addresses on other domains (a look-alike included) sign in with passwords as before.
    make_user(app, "dave@acme.test", name="Dave")
    make_user(app, "erin@corp.example.evil.example", name="Erin")
    for email in ("dave@acme.test", "erin@corp.example.evil.example"):
        answer, browser = attempt(browsers, email, STRONG_PASSWORD)
        assert answer.status_code == 303, (email, answer.text)
        assert not signed_out(browser)
        wrong, _ = attempt(browsers, email, OTHER_STRONG_PASSWORD)
        assert wrong.status_code == 401, email
        assert "sso-continue" not in wrong.text
    assert len(events("login.sso_required")) == 1
