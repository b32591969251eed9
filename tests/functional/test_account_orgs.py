"""The account page's organisations: the permissions held in the active one, and switching.

Switching is a privilege change: it is allowed only into one's own organisations, gives the
session a new id (the old cookie stops working), and is audited.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from flask import Flask
from sqlalchemy import select

from idp.extensions import db
from idp.models import AuditEvent, Organisation
from idp.services import orgs
from tests.support import (
    STRONG_PASSWORD,
    cli_context,
    csrf_token,
    make_user,
    session_cookie,
    sign_in,
)

SWITCH = re.compile(r'name="org" value="([^"]+)">\s*<button[^>]*>Switch to ([^<]+)</button>')


@pytest.fixture
def jane(app: Flask, base_url: str) -> Iterator[httpx.Client]:
    """Jane: a member of Acme (her first organisation) and an admin of Beta."""
    user = make_user(app, "jane@acme.test", org_slug="acme", role="member")
    beta = orgs.create("beta", "Beta")
    orgs.add_member(user, beta, orgs.get_role(beta, "admin"))
    db.session.commit()
    with httpx.Client(base_url=base_url, timeout=30, headers={"Accept": "text/html"}) as client:
        assert sign_in(client, "jane@acme.test", STRONG_PASSWORD).status_code == 303
        yield client


def held(page: str) -> list[str]:
    block = re.search(r'<dl id="permissions"[^>]*>(.*?)</dl>', page, re.S)
    return re.findall(r"<dt><code>([^<]+)</code></dt>", block.group(1)) if block else []


def test_switching_changes_permissions_rotates_the_session_and_is_audited(
    app, jane: httpx.Client, base_url: str
) -> None:
    page = jane.get("/account").text
    assert "Your permissions in Acme" in page
    assert held(page) == ["messages.edit", "messages.send"]
    assert jane.get("/admin").status_code == 403
    offered = SWITCH.findall(page)
    beta_id = db.session.scalar(select(Organisation.id).where(Organisation.slug == "beta"))
    assert offered == [(beta_id, "Beta")]  # only the other organisation is offered

    old_cookie = session_cookie(jane)
    response = jane.post("/account/org", data={"csrf_token": csrf_token(page), "org": beta_id})
    assert response.status_code == 302
    assert response.headers["location"] == "/account?switched=1"
    new_cookie = session_cookie(jane)
    assert new_cookie and new_cookie != old_cookie  # a new session id

    switched = jane.get("/account?switched=1").text
    assert "You now act in Beta." in switched
    assert "Your permissions in Beta" in switched
    assert "members.manage" in held(switched) and "billing.manage" not in held(switched)
    assert jane.get("/admin").status_code == 200
    assert '<a href="/admin">Admin</a>' in switched

    # The cookie from before the switch no longer works.
    with httpx.Client(base_url=base_url, headers={"Accept": "text/html"}) as thief:
        thief.cookies.set("bascule_session", old_cookie or "")
        assert thief.get("/account").status_code == 302

    db.session.rollback()
    event = db.session.scalars(
        select(AuditEvent).where(AuditEvent.event == "session.org_switch")
    ).one()
    assert (event.actor_email, event.target) == ("jane@acme.test", "beta")
    assert event.details == {"from": "acme", "to": "beta"}
    assert event.org_id == beta_id


def test_cannot_switch_into_an_organisation_one_is_not_in(app, jane: httpx.Client) -> None:
    gamma = orgs.create("gamma", "Gamma")
    db.session.commit()
    token = csrf_token(jane.get("/account").text)
    before = session_cookie(jane)
    for org_id in [gamma.id, "no-such-org", ""]:
        response = jane.post("/account/org", data={"csrf_token": token, "org": org_id})
        assert response.status_code in {400, 404}, org_id
    assert session_cookie(jane) == before
    assert "Your permissions in Acme" in jane.get("/account").text
    db.session.rollback()
    assert (
        db.session.scalars(select(AuditEvent).where(AuditEvent.event == "session.org_switch")).all()
        == []
    )


def test_one_organisation_offers_no_switch(app, base_url: str) -> None:
    make_user(app, "solo@acme.test", role="viewer")
    with httpx.Client(base_url=base_url, headers={"Accept": "text/html"}) as solo:
        sign_in(solo, "solo@acme.test", STRONG_PASSWORD)
        page = solo.get("/account").text
    assert SWITCH.search(page) is None
    assert held(page) == [] and "None: your role lets you sign in" in page
    assert '<a href="/admin">Admin</a>' not in page


def test_switching_applies_the_new_organisations_session_limits(
    app, jane: httpx.Client, clock
) -> None:
    """Beta allows 10 idle minutes (Acme the instance's 30): after switching, 11 idle minutes
    end the session."""
    beta = orgs.get("beta")
    beta.session_idle_minutes = 10
    db.session.commit()
    page = jane.get("/account").text
    beta_id = beta.id
    jane.post("/account/org", data={"csrf_token": csrf_token(page), "org": beta_id})
    clock.advance(9 * 60)
    assert jane.get("/account").status_code == 200
    clock.advance(11 * 60)
    assert jane.get("/account").status_code == 302


def test_an_organisations_admin_ends_only_sessions_active_in_it(app, jane: httpx.Client) -> None:
    """Jane is in Acme and Beta. Beta's owner signs her out: her Acme session survives; once
    she acts in Beta, Beta's owner can end that session."""
    from idp.services import members, users
    from idp.services.authz import Principal

    owner = make_user(app, "boss@beta.test", org_slug="beta", role="owner")
    beta = orgs.get("beta")
    jane_user = users.get_by_email("jane@acme.test")
    member = orgs.membership(jane_user, beta)
    assert member is not None
    member_id = member.id
    ctx = cli_context()
    beta_owner = Principal(owner, beta, "session")

    assert members.revoke_sessions(beta_owner, ctx, member_id) == 0
    page = jane.get("/account")
    assert page.status_code == 200 and jane_user.email in page.text

    jane.post("/account/org", data={"csrf_token": csrf_token(page.text), "org": beta.id})
    assert members.revoke_sessions(beta_owner, ctx, member_id) == 1
    assert jane.get("/account").status_code == 302
