"""The organisation's 2FA policy (forced enrolment, grace period, SSO exemption) and the
admin's reset of a member's factors."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest
from flask import Flask
from sqlalchemy import select

from idp.extensions import db
from idp.models import AuditEvent, Membership, RecoveryCode, TotpFactor, User, WebAuthnCredential
from idp.services import mfa, mfa_policy, orgs, sessions
from idp.services.authz import Forbidden, Principal
from idp.services.errors import NotFound, ServiceError
from tests.mfa_support import (
    enrol_totp,
    is_signed_in,
    json_post,
    oathtool,
    page_csrf,
    password_step,
    recovery_codes,
    register_key,
    sign_out,
    totp_page_secret,
)
from tests.soft_authenticator import SoftAuthenticator
from tests.support import STRONG_PASSWORD, cli_context, make_user, post_form, sign_in


def _principal(email: str, slug: str = "acme") -> Principal:
    user = db.session.scalar(select(User).where(User.email == email))
    return Principal(user, orgs.get(slug), "session")


def _set_policy(app: Flask, policy: str, grace_days: int | None = None) -> None:
    mfa_policy.set_policy(_principal("owner@acme.test"), cli_context(), policy, grace_days)
    db.session.commit()


def _member_id(email: str) -> int:
    return db.session.scalar(select(Membership.id).join(User).where(User.email == email))  # type: ignore[return-value]


@pytest.fixture
def acme(app: Flask) -> Flask:
    make_user(app, "owner@acme.test", role="owner", name="Olive Owner")
    make_user(app, "admin@acme.test", role="admin", name="Adam Admin")
    make_user(app, "member@acme.test", role="member", name="Meg Member")
    return app


def test_policy_everyone_leads_through_enrolment_before_signing_in(
    acme: Flask, browser_client: httpx.Client, clock
) -> None:
    _set_policy(acme, "everyone")
    response = sign_in(browser_client, "member@acme.test", STRONG_PASSWORD, "/account/sessions")
    assert response.headers["location"] == "/login/2fa/setup"
    assert not is_signed_in(browser_client)  # not signed in until a factor is set up

    page = browser_client.get("/login/2fa/setup")
    assert "Your organisation requires a second step" in page.text
    assert "data:image/svg+xml;base64," in page.text and "Add security key" in page.text
    secret = totp_page_secret(page.text)
    wrong = post_form(browser_client, "/login/2fa/setup/totp", {"code": "000000"}, page.text)
    assert wrong.status_code == 400 and not is_signed_in(browser_client)
    done = post_form(
        browser_client, "/login/2fa/setup/totp", {"code": oathtool(secret, clock())}, page.text
    )
    assert done.headers["location"] == "/account/2fa/recovery-codes"
    shown = browser_client.get("/account/2fa/recovery-codes").text
    assert len(recovery_codes(shown)) == 10
    assert 'href="/account/sessions"' in shown  # then on to where the person was going
    rt = acme.extensions["bascule"]
    user = _principal("member@acme.test").user
    assert user is not None
    amrs = [s.amr for s in sessions.list_for_user(rt.store, user.id, clock(), rt.session_limits)]
    assert amrs == [["pwd", "otp", "mfa"]]


def test_forced_enrolment_with_a_security_key(
    acme: Flask, browser_client: httpx.Client, base_url: str
) -> None:
    _set_policy(acme, "everyone")
    assert password_step(browser_client, "member@acme.test") == "/login/2fa/setup"
    csrf = page_csrf(browser_client.get("/login/2fa/setup").text)
    key = SoftAuthenticator(base_url, urlsplit(base_url).hostname or "")
    options = json_post(browser_client, "/login/2fa/setup/webauthn/options", {}, csrf)
    credential = key.create(options.json()["publicKey"])
    done = json_post(
        browser_client, "/login/2fa/setup/webauthn/verify", {"credential": credential}, csrf
    )
    assert done.json() == {"redirect": "/account/2fa/recovery-codes"}
    assert is_signed_in(browser_client)
    assert db.session.scalar(select(WebAuthnCredential.name)) == "Security key 1"


def test_policy_admins_applies_to_administrative_roles_only(acme: Flask, base_url: str) -> None:
    _set_policy(acme, "admins")
    with httpx.Client(base_url=base_url) as member, httpx.Client(base_url=base_url) as admin:
        assert password_step(member, "member@acme.test") == "/account"
        assert password_step(admin, "admin@acme.test") == "/login/2fa/setup"


def test_grace_period_then_enforcement(acme: Flask, browser_client: httpx.Client, clock) -> None:
    _set_policy(acme, "everyone", grace_days=7)
    assert password_step(browser_client, "member@acme.test") == "/account"
    page = browser_client.get("/account/2fa").text
    assert "Your organisation requires two-factor authentication from" in page
    sign_out(browser_client)
    clock.advance(7 * 86400 + 1)
    assert password_step(browser_client, "member@acme.test") == "/login/2fa/setup"


def test_sso_sign_ins_are_exempt(acme: Flask, clock) -> None:
    _set_policy(acme, "everyone")
    user = _principal("member@acme.test").user
    assert user is not None
    assert mfa_policy.requirement(user, ["pwd"], clock()).enforced
    assert not mfa_policy.requirement(user, ["ext"], clock()).required
    assert not mfa_policy.requirement(user, ["ext", "mfa"], clock()).required
    assert mfa.after_password(user, ["ext"], clock()) == "sign_in"
    assert mfa.after_password(user, ["pwd"], clock()) == "enrol"


def test_policy_off_and_a_user_in_two_organisations(acme: Flask, clock) -> None:
    """The strictest of the user's organisations applies, whichever one is active."""
    user = _principal("member@acme.test").user
    assert user is not None
    assert not mfa_policy.requirement(user, ["pwd"], clock()).required
    strict = orgs.create("strict", "Strict Ltd")
    orgs.add_member(user, strict, orgs.get_role(strict, "viewer"))
    strict.mfa_policy = "everyone"
    db.session.commit()
    assert mfa_policy.requirement(user, ["pwd"], clock()).enforced


def test_only_security_managers_set_the_policy(acme: Flask) -> None:
    with pytest.raises(Forbidden):
        mfa_policy.set_policy(_principal("member@acme.test"), cli_context(), "everyone")
    with pytest.raises(ServiceError):
        mfa_policy.set_policy(_principal("admin@acme.test"), cli_context(), "sometimes")
    mfa_policy.set_policy(_principal("admin@acme.test"), cli_context(), "admins", 14)
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.event == "org.mfa_policy_change"))
    assert event is not None and event.details["after"]["policy"] == "admins"


def test_the_last_factor_stays_while_the_policy_requires_one(
    acme: Flask, browser_client: httpx.Client, clock
) -> None:
    sign_in(browser_client, "member@acme.test", STRONG_PASSWORD)
    enrol_totp(browser_client, clock())
    _set_policy(acme, "everyone")
    page = browser_client.get("/account/2fa").text
    refused = post_form(browser_client, "/account/2fa/totp/remove", {}, page)
    assert refused.status_code == 400
    assert "Add another method before removing this one" in refused.text
    assert db.session.scalar(select(TotpFactor)) is not None


def _member_with_factors(app: Flask, client: httpx.Client, email: str, clock) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, email, STRONG_PASSWORD)
    enrol_totp(client, clock())
    key = SoftAuthenticator(str(client.base_url), "127.0.0.1")
    assert register_key(client, key).status_code == 200
    sign_out(client)


def test_admin_resets_a_members_factors(acme: Flask, browser_client: httpx.Client, clock) -> None:
    _member_with_factors(acme, browser_client, "member@acme.test", clock)
    assert password_step(browser_client, "member@acme.test") == "/login/2fa"

    removed = mfa.reset_factors(
        _principal("admin@acme.test"), cli_context(), _member_id("member@acme.test")
    )
    assert removed == {"totp": 1, "security_keys": 1, "recovery_codes": 10}
    db.session.expire_all()
    for model in (TotpFactor, WebAuthnCredential, RecoveryCode):
        assert db.session.scalar(select(model)) is None
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.event == "mfa.reset"))
    assert event is not None
    assert (event.actor_email, event.target) == ("admin@acme.test", "member@acme.test")
    browser_client.cookies.clear()
    assert password_step(browser_client, "member@acme.test") == "/account"


def test_reset_needs_members_manage_and_control_of_the_member(
    acme: Flask, browser_client: httpx.Client, clock
) -> None:
    _member_with_factors(acme, browser_client, "owner@acme.test", clock)
    ctx = cli_context()
    with pytest.raises(Forbidden):  # a member cannot manage members
        mfa.reset_factors(_principal("member@acme.test"), ctx, _member_id("owner@acme.test"))
    with pytest.raises(Forbidden):  # an admin does not control an owner (billing.manage)
        mfa.reset_factors(_principal("admin@acme.test"), ctx, _member_id("owner@acme.test"))
    other = make_user(acme, "eve@other.test", org_slug="other", role="owner")
    assert other
    with pytest.raises(NotFound):  # members of another organisation are not visible
        mfa.reset_factors(_principal("admin@acme.test"), ctx, _member_id("eve@other.test"))
    db.session.expire_all()
    assert db.session.scalar(select(TotpFactor)) is not None
    mfa.reset_factors(_principal("owner@acme.test"), ctx, _member_id("owner@acme.test"))
    assert db.session.scalar(select(TotpFactor)) is None
