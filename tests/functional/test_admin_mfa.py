"""Two-factor authentication in the admin console: resetting a member's factors, the policy on
the settings page, and adoption on the overview.

Factors are enrolled through HTTP as a person would (tests/mfa_support.py). A reset takes the
member back to a password alone: with the policy on, their next sign-in leads to enrolment;
with it off, they are simply signed in. Those who do not control the member are refused and
nothing is removed; a policy change is audited; a grace period out of range is explained.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import unescape

import httpx
import pytest
from flask import Flask
from sqlalchemy import func, select

from idp.extensions import db
from idp.models import Organisation, RecoveryCode, TotpFactor, User, WebAuthnCredential
from idp.services import admin_overview, orgs
from idp.services.authz import Principal
from tests.functional.test_admin_console import (
    MEMBER,
    NOTICE,
    OWNER,
    act,
    alert,
    events,
    followed,
    fresh,
    membership_id,
)
from tests.mfa_support import enrol_totp, password_step, register_key
from tests.soft_authenticator import SoftAuthenticator
from tests.support import Browsers, make_user, post_form

ADMIN = "adam@acme.test"
DAY = 86400


@pytest.fixture
def acme(app: Flask) -> Flask:
    make_user(app, OWNER, role="owner", name="Olivia Owner")
    make_user(app, ADMIN, role="admin", name="Adam Admin")
    make_user(app, MEMBER, role="member")
    return app


def with_totp(browsers: Browsers, address: str, clock) -> httpx.Client:  # type: ignore[no-untyped-def]
    """Sign ``address`` in and set up an authenticator app (and so ten recovery codes)."""
    client = browsers.signed_in(address)
    enrol_totp(client, clock())
    return client


def factor_rows(address: str) -> tuple[int, int, int]:
    """How many TOTP seeds, security keys and recovery codes ``address`` has, as committed."""
    user_id = fresh(select(User.id).where(User.email == address))
    return tuple(  # type: ignore[return-value]
        fresh(select(func.count()).select_from(model).where(model.user_id == user_id))
        for model in (TotpFactor, WebAuthnCredential, RecoveryCode)
    )


def acme_policy() -> tuple[str, datetime | None]:
    org = fresh(select(Organisation).where(Organisation.slug == "acme"))
    return org.mfa_policy, org.mfa_grace_until


def notice(page: str) -> str:
    match = NOTICE.search(page)
    assert match, "no notice on the page"
    return unescape(match.group(1))


def member_row(page: str, address: str) -> str:
    rows = re.findall(r"<tr>.*?</tr>", page, re.S)
    found = [row for row in rows if address in row]
    assert len(found) == 1, f"no single row for {address}"
    return found[0]


def set_policy_form(client: httpx.Client, policy: str, grace: str = "") -> httpx.Response:
    page = client.get("/admin/settings").text
    data = {"mfa_policy": policy, "mfa_grace_days": grace}
    return post_form(client, "/admin/settings/2fa", data, page=page)


# --- reset ----------------------------------------------------------------------------------


def test_owner_resets_a_members_factors_and_the_member_enrols_again(
    acme: Flask, browsers: Browsers, clock
) -> None:
    with_totp(browsers, MEMBER, clock)
    owner = browsers.signed_in(OWNER)
    assert set_policy_form(owner, "everyone").status_code == 303
    assert password_step(browsers.new(), MEMBER) == "/login/2fa"  # her app is asked for

    page = owner.get("/admin/members").text
    row = member_row(page, MEMBER)
    assert '<span class="tag good">set up</span>' in row
    mid = membership_id(MEMBER)
    assert f'href="/admin/members/{mid}/factors/reset">Reset second factors…</a>' in row
    assert "Reset second factors" not in member_row(page, ADMIN)  # nothing to reset there

    confirm = owner.get(f"/admin/members/{mid}/factors/reset")
    assert confirm.status_code == 200
    text = unescape(confirm.text)
    assert f"Reset the second factors of {MEMBER}?" in text
    assert "This removes their authenticator app, with 10 unused recovery codes." in text
    assert "their next sign-in asks them to set one up" in text

    done = post_form(owner, f"/admin/members/{mid}/factors/reset", {}, page=confirm.text)
    shown = notice(followed(owner, done))
    assert shown.startswith(
        f"The second factors of {MEMBER} were reset: 1 authenticator app and 10 recovery codes "
        "removed."
    )
    assert factor_rows(MEMBER) == (0, 0, 0)
    [reset] = events("mfa.reset")
    assert (reset.actor_email, reset.target) == (OWNER, MEMBER)
    assert reset.details == {"totp": 1, "security_keys": 0, "recovery_codes": 10}
    assert "Reset second factors" not in member_row(owner.get("/admin/members").text, MEMBER)

    # Under the policy, her next sign-in must set up a new factor before she gets in.
    assert password_step(browsers.new(), MEMBER) == "/login/2fa/setup"
    # Without a policy, she is simply signed in with her password.
    assert set_policy_form(owner, "off").status_code == 303
    assert password_step(browsers.new(), MEMBER) == "/account"


def test_reset_of_security_keys_too(acme: Flask, browsers: Browsers, base_url: str) -> None:
    adam = browsers.signed_in(ADMIN)
    for name in ("Blue key", "Red key"):
        assert register_key(adam, SoftAuthenticator(base_url, "127.0.0.1"), name).status_code == 200
    owner = browsers.signed_in(OWNER)
    response = act(owner, f"/admin/members/{membership_id(ADMIN)}/factors/reset")
    assert notice(followed(owner, response)).startswith(
        f"The second factors of {ADMIN} were reset: 2 security keys and 10 recovery codes removed."
    )
    assert factor_rows(ADMIN) == (0, 0, 0)


def test_reset_is_refused_to_those_who_do_not_control_the_member(
    acme: Flask, browsers: Browsers, clock
) -> None:
    owner = with_totp(browsers, OWNER, clock)  # signed in; a new sign-in would ask for a code
    jane = with_totp(browsers, MEMBER, clock)
    owner_id, member_id = membership_id(OWNER), membership_id(MEMBER)

    adam = browsers.signed_in(ADMIN)
    row = member_row(adam.get("/admin/members").text, OWNER)
    assert "Reset second factors" not in row  # not offered for an owner ...
    refused = act(adam, f"/admin/members/{owner_id}/factors/reset")  # ... and refused if sent
    assert refused.status_code == 403
    assert "You cannot grant permissions you do not hold: billing.manage." in refused.text

    assert jane.get(f"/admin/members/{owner_id}/factors/reset").status_code == 403
    assert act(jane, f"/admin/members/{owner_id}/factors/reset").status_code == 403
    assert act(jane, f"/admin/members/{member_id}/factors/reset").status_code == 403

    stranger = make_user(acme, "sam@other.test", org_slug="other", role="owner")
    other_id = membership_id(stranger.email, "other")
    assert owner.get(f"/admin/members/{other_id}/factors/reset").status_code == 404
    assert act(owner, f"/admin/members/{other_id}/factors/reset").status_code == 404

    assert factor_rows(OWNER) == (1, 0, 10)
    assert factor_rows(MEMBER) == (1, 0, 10)
    assert events("mfa.reset") == []


# --- the policy -----------------------------------------------------------------------------


def test_policy_change_is_saved_and_audited(acme: Flask, browsers: Browsers, clock) -> None:
    owner = browsers.signed_in(OWNER)
    page = owner.get("/admin/settings").text
    assert '<section id="two-factor">' in page
    assert re.search(r'value="off" checked>', page)  # the policy in force is the one ticked
    for words in ("Nobody", "Administrators", "Everyone", "Leave empty for none."):
        assert words in page

    response = set_policy_form(owner, "everyone", "14")
    assert response.headers["location"] == "/admin/settings#two-factor"
    deadline = datetime.fromtimestamp(clock() + 14 * DAY, UTC)
    assert notice(owner.get("/admin/settings").text) == (
        "The two-factor policy was saved. Required for everyone in the organisation. Until "
        f"{deadline:%Y-%m-%d}, members without a second factor may still sign in without one."
    )
    assert acme_policy() == ("everyone", deadline)
    [change] = events("org.mfa_policy_change")
    assert change.actor_email == OWNER and change.target == "acme"
    assert change.details == {
        "before": {"policy": "off", "grace_until": None},
        "after": {"policy": "everyone", "grace_until": deadline.isoformat()},
    }
    page = owner.get("/admin/settings").text
    assert re.search(r'value="everyone" checked>', page)
    assert f"A grace period now runs until {deadline:%Y-%m-%d} (14 days left)" in page

    # An empty grace period keeps the deadline; 0 ends it.
    clock.advance(3 * DAY)
    owner = browsers.signed_in(OWNER)  # the session timed out; the grace period lets her in
    assert "(11 days left)" in owner.get("/admin/settings").text
    assert set_policy_form(owner, "admins").status_code == 303
    assert acme_policy() == ("admins", deadline)
    assert set_policy_form(owner, "admins", "0").status_code == 303
    assert acme_policy() == ("admins", None)
    assert [e.details["after"]["policy"] for e in events("org.mfa_policy_change")] == [
        "everyone", "admins", "admins",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "grace", "message"),
    [
        ("everyone", "91", "“Grace period (days)” must be between 0 and 90."),
        ("everyone", "100000", "“Grace period (days)” must be between 0 and 90."),
        ("everyone", "-1", "“Grace period (days)” must be a whole number from 0 to 90."),
        ("everyone", "soon", "“Grace period (days)” must be a whole number from 0 to 90."),
        ("sometimes", "", "“Who must use a second factor” must be one of off, admins, everyone."),
    ],
)
def test_out_of_range_values_are_refused_clearly(
    acme: Flask, browsers: Browsers, policy: str, grace: str, message: str
) -> None:
    owner = browsers.signed_in(OWNER)
    response = set_policy_form(owner, policy, grace)
    assert response.status_code == 400
    assert alert(response.text) == message
    if grace:
        assert f'name="mfa_grace_days" type="number" inputmode="numeric" value="{grace}"' in (
            response.text
        )  # what was typed stays in the form
    assert acme_policy() == ("off", None)
    assert events("org.mfa_policy_change") == []


def test_only_security_managers_change_the_policy(acme: Flask, browsers: Browsers) -> None:
    orgs.create_role(orgs.get("acme"), "people", frozenset({"members.manage"}))
    db.session.commit()
    make_user(acme, "pat@acme.test", role="people")
    pat = browsers.signed_in("pat@acme.test")
    assert pat.get("/admin/settings").status_code == 403
    assert act(pat, "/admin/settings/2fa", {"mfa_policy": "off"}).status_code == 403
    assert act(pat, "/admin/settings/2fa", {"mfa_policy": "everyone"}).status_code == 403
    assert acme_policy() == ("off", None)


# --- the overview ---------------------------------------------------------------------------


def test_overview_shows_adoption_and_the_policy(
    acme: Flask, browsers: Browsers, base_url: str, clock
) -> None:
    with_totp(browsers, MEMBER, clock)
    adam = browsers.signed_in(ADMIN)
    assert register_key(adam, SoftAuthenticator(base_url, "127.0.0.1")).status_code == 200
    make_user(acme, "ivy@acme.test", password=None)  # invited: counted, without a factor
    make_user(acme, "sam@other.test", org_slug="other", role="owner")
    with_totp(browsers, "sam@other.test", clock)  # another organisation's: not counted
    # Someone who may only read the audit log (signed in before any policy applies to her).
    orgs.create_role(orgs.get("acme"), "auditor", frozenset({"audit.read"}))
    db.session.commit()
    make_user(acme, "audrey@acme.test", role="auditor")
    audrey = browsers.signed_in("audrey@acme.test")

    owner = browsers.signed_in(OWNER)
    overview = owner.get("/admin").text
    section = overview[overview.index('<section class="stat" id="two-factor">') :]
    section = section[: section.index("</section>")]
    assert '<p class="number">2 / 5</p>' in section
    assert "Not required: members may still add a second factor" in section
    assert 'href="/admin/settings#two-factor">Change the policy</a>' in section

    assert set_policy_form(owner, "admins", "7").status_code == 303
    deadline = datetime.fromtimestamp(clock() + 7 * DAY, UTC)
    overview = unescape(owner.get("/admin").text)
    assert "Required for administrators" in overview
    assert f"Until {deadline:%Y-%m-%d} (7 days left), those without one may still" in overview

    # The auditor sees the numbers, not a link to change the policy.
    seen = audrey.get("/admin").text
    assert '<p class="number">2 / 5</p>' in seen and "(7 days left)" in seen
    assert "Change the policy" not in seen

    # Once the grace period is over, none is left to show.
    clock.advance(7 * DAY + 1)
    db.session.rollback()
    olivia = db.session.scalar(select(User).where(User.email == OWNER))
    acting = Principal(olivia, orgs.get("acme"), "session")
    later = admin_overview.summary(acting, clock()).second_factors
    assert (later.enrolled, later.total, later.policy, later.grace_days) == (2, 5, "admins", 0)
