"""Two-factor authentication in the admin API: resetting a member's factors, and the policy in
/api/v1/settings.

The reset answers what it removed and the member is back to a password alone; it is refused
(and the refusal audited) to a token whose person does not control the member, and another
organisation's member is not found. The policy is read and changed with the other settings;
every refusal names the field, and a refused request changes nothing at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from flask import Flask
from sqlalchemy import func, select

from idp.extensions import db
from idp.models import AuditEvent, Organisation, RecoveryCode, TotpFactor, User
from idp.services import orgs
from tests.functional.test_api import denials, member_id, problem
from tests.mfa_support import enrol_totp, password_step
from tests.support import STRONG_PASSWORD, Api, make_user, sign_in, token_for

DAY = 86400


@pytest.fixture
def as_owner(app: Flask, owner: User, base_url: str) -> Iterator[Api]:
    api = Api(base_url, token_for(app, owner))
    yield api
    api.client.close()


def with_totp(base_url: str, address: str, clock) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=base_url, timeout=30) as client:
        assert sign_in(client, address, STRONG_PASSWORD).status_code == 303
        enrol_totp(client, clock())


def factor_count(user: User) -> tuple[int, int]:
    db.session.rollback()
    return tuple(  # type: ignore[return-value]
        db.session.scalar(select(func.count()).select_from(m).where(m.user_id == user.id))
        for m in (TotpFactor, RecoveryCode)
    )


def acme() -> Organisation:
    db.session.rollback()
    db.session.expire_all()
    return orgs.get("acme")


def events(name: str) -> list[AuditEvent]:
    db.session.rollback()
    query = select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.seq)
    return list(db.session.scalars(query))


# --- reset ----------------------------------------------------------------------------------


def test_reset_answers_what_was_removed(app, as_owner: Api, base_url: str, clock) -> None:
    jane = make_user(app)
    with_totp(base_url, "jane@acme.test", clock)
    with httpx.Client(base_url=base_url) as browser:
        assert password_step(browser, "jane@acme.test") == "/login/2fa"

    response = as_owner.post(f"/members/{member_id(jane)}/factors/reset")
    assert response.status_code == 200, response.text
    assert response.json() == {"totp": 1, "security_keys": 0, "recovery_codes": 10}
    assert response.headers["cache-control"] == "no-store"
    assert factor_count(jane) == (0, 0)
    [reset] = events("mfa.reset")
    assert (reset.actor_email, reset.target) == ("olivia@acme.test", "jane@acme.test")
    with httpx.Client(base_url=base_url) as browser:
        assert password_step(browser, "jane@acme.test") == "/account"  # password alone now

    again = as_owner.post(f"/members/{member_id(jane)}/factors/reset")
    assert again.json() == {"totp": 0, "security_keys": 0, "recovery_codes": 0}

    # Under a policy, her next sign-in sets up a new factor before she gets in.
    assert as_owner.patch("/settings", json={"mfa_policy": "everyone"}).status_code == 200
    with httpx.Client(base_url=base_url) as browser:
        assert password_step(browser, "jane@acme.test") == "/login/2fa/setup"


def test_reset_is_refused_without_control(app, owner: User, base_url: str, clock) -> None:
    adam = make_user(app, "adam@acme.test", role="admin")
    jane = make_user(app)
    with_totp(base_url, "olivia@acme.test", clock)
    with_totp(base_url, "jane@acme.test", clock)
    as_admin, as_member = Api(base_url, token_for(app, adam)), Api(base_url, token_for(app, jane))

    refused = as_admin.post(f"/members/{member_id(owner)}/factors/reset")
    assert problem(refused, 403)["detail"] == (
        "You cannot grant permissions you do not hold: billing.manage."
    )
    for target in (owner, jane):
        refused = as_member.post(f"/members/{member_id(target)}/factors/reset")
        assert "'members.manage' permission" in problem(refused, 403)["detail"]
    assert [(e.actor_email, e.target) for e in denials()] == [
        ("adam@acme.test", f"POST /api/v1/members/{member_id(owner)}/factors/reset"),
        ("jane@acme.test", f"POST /api/v1/members/{member_id(owner)}/factors/reset"),
        ("jane@acme.test", f"POST /api/v1/members/{member_id(jane)}/factors/reset"),
    ]
    assert factor_count(owner) == (1, 10) and factor_count(jane) == (1, 10)
    assert events("mfa.reset") == []

    # The admin does control a member: that works.
    done = as_admin.post(f"/members/{member_id(jane)}/factors/reset")
    assert done.status_code == 200 and done.json()["totp"] == 1


def test_another_organisations_member_is_not_found(app, as_owner: Api, base_url, clock) -> None:
    stranger = make_user(app, "sam@other.test", org_slug="other", role="member")
    with_totp(base_url, "sam@other.test", clock)
    problem(as_owner.post(f"/members/{member_id(stranger, 'other')}/factors/reset"), 404)
    problem(as_owner.post("/members/999999999/factors/reset"), 404)
    assert factor_count(stranger) == (1, 10)


# --- the policy in /settings ----------------------------------------------------------------


def test_policy_read_and_changed_with_the_settings(app, as_owner: Api, clock) -> None:
    before = as_owner.get("/settings").json()
    assert (before["mfa_policy"], before["mfa_grace_days"], before["mfa_grace_until"]) == (
        "off", 0, None,
    )  # fmt: skip

    changed = as_owner.patch("/settings", json={"mfa_policy": "admins", "mfa_grace_days": 10})
    assert changed.status_code == 200, changed.text
    deadline = datetime.fromtimestamp(clock() + 10 * DAY, UTC)
    body = changed.json()
    assert (body["mfa_policy"], body["mfa_grace_days"]) == ("admins", 10)
    assert body["mfa_grace_until"] == deadline.isoformat(timespec="seconds")
    assert as_owner.get("/settings").json() == body
    assert (acme().mfa_policy, acme().mfa_grace_until) == ("admins", deadline)
    [change] = events("org.mfa_policy_change")
    assert change.actor_email == "olivia@acme.test"
    assert change.details["before"] == {"policy": "off", "grace_until": None}
    assert change.details["after"] == {"policy": "admins", "grace_until": deadline.isoformat()}

    # The policy alone keeps the deadline; a grace period alone keeps the policy.
    clock.advance(DAY)
    kept = as_owner.patch("/settings", json={"mfa_policy": "everyone"}).json()
    assert (kept["mfa_policy"], kept["mfa_grace_days"]) == ("everyone", 9)
    assert acme().mfa_grace_until == deadline
    ended = as_owner.patch("/settings", json={"mfa_grace_days": 0}).json()
    assert (ended["mfa_policy"], ended["mfa_grace_days"], ended["mfa_grace_until"]) == (
        "everyone", 0, None,
    )  # fmt: skip
    assert len(events("org.mfa_policy_change")) == 3

    # Other settings alone leave the policy, and its audit trail, as they were.
    other = as_owner.patch("/settings", json={"session_idle_minutes": 10}).json()
    assert (other["session_idle_minutes"], other["mfa_policy"]) == (10, "everyone")
    assert len(events("org.mfa_policy_change")) == 3
    both = as_owner.patch("/settings", json={"session_max_hours": 2, "mfa_policy": "off"}).json()
    assert (both["session_max_hours"], both["mfa_policy"]) == (2, "off")


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"mfa_grace_days": 91}, "mfa_grace_days must be between 0 and 90"),
        ({"mfa_grace_days": -1}, "mfa_grace_days must be between 0 and 90"),
        ({"mfa_policy": "everyone", "mfa_grace_days": 10**12}, "must be between 0 and 90"),
        ({"mfa_grace_days": "7"}, "mfa_grace_days must be a whole number."),
        ({"mfa_grace_days": 7.5}, "mfa_grace_days must be a whole number."),
        ({"mfa_grace_days": None}, "mfa_grace_days must be a whole number."),
        ({"mfa_policy": "sometimes"}, "mfa_policy must be one of off, admins, everyone"),
        ({"mfa_policy": ""}, "mfa_policy must be one of off, admins, everyone"),
        ({"mfa_policy": True}, "mfa_policy must be a string."),
        # All or nothing: the valid session setting is not saved either.
        ({"session_idle_minutes": 10, "mfa_grace_days": 91}, "between 0 and 90"),
        ({"session_idle_minutes": 1, "mfa_policy": "everyone"}, "between 5 and 30"),
    ],
)
def test_policy_refusals_name_the_field_and_change_nothing(
    app, as_owner: Api, body: dict[str, object], detail: str
) -> None:
    before = as_owner.get("/settings").json()
    assert detail in problem(as_owner.patch("/settings", json=body), 400)["detail"]
    assert as_owner.get("/settings").json() == before
    assert events("org.mfa_policy_change") == [] and events("org.settings_change") == []


def test_only_security_managers_read_or_change_the_policy(app, owner: User, base_url) -> None:
    orgs.create_role(orgs.get("acme"), "people", frozenset({"members.manage"}))
    db.session.commit()
    pat = Api(base_url, token_for(app, make_user(app, "pat@acme.test", role="people")))
    problem(pat.get("/settings"), 403)
    for body in ({"mfa_policy": "off"}, {"mfa_grace_days": 1}, {"mfa_policy": "nonsense"}):
        assert (
            "'security.manage' permission"
            in problem(pat.patch("/settings", json=body), 403)["detail"]
        )
    assert acme().mfa_policy == "off" and events("org.mfa_policy_change") == []


def test_the_document_describes_reset_and_policy(app, base_url: str) -> None:
    spec = httpx.get(f"{base_url}/api/v1/openapi.json").json()
    reset = spec["paths"]["/api/v1/members/{member_id}/factors/reset"]["post"]
    assert reset["operationId"] == "resetMemberFactors"
    assert reset["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/FactorsRemoved"
    }
    schemas = spec["components"]["schemas"]
    patch = schemas["SettingsPatch"]["properties"]
    assert patch["mfa_policy"]["enum"] == ["off", "admins", "everyone"]
    assert (patch["mfa_grace_days"]["minimum"], patch["mfa_grace_days"]["maximum"]) == (0, 90)
    assert {"mfa_policy", "mfa_grace_days", "mfa_grace_until"} <= set(
        schemas["Settings"]["required"]
    )
