"""End to end against a real, independent IdP: SimpleSAMLphp, configured from our SP metadata.

The connection is made with ``bascule saml add`` (metadata fetched from SimpleSAMLphp's URL);
SimpleSAMLphp learns about us from the SP metadata that command points to. Then a person signs
in at the IdP's own login form, comes back signed in with the role their groups map to, signs
in again with changed attributes, and single logout is run from either side.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select

from idp.cli import main as bascule
from idp.config import Settings
from idp.extensions import db
from idp.models import AuditEvent, User
from idp.services import orgs, users
from tests.saml import simplesamlphp
from tests.saml.simplesamlphp import SimpleSamlIdp
from tests.support import csrf_token

pytestmark = pytest.mark.slow


@pytest.fixture
def corporate_idp(tmp_path: Path) -> Iterator[SimpleSamlIdp]:
    problem = simplesamlphp.simplesamlphp_problem()
    if problem:
        pytest.skip(problem)
    with simplesamlphp.running_idp(tmp_path / "simplesamlphp") as idp:
        yield idp


def run_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    """``bascule …`` in-process, configured like the app under test."""
    env = {
        "BASCULE_ISSUER": settings.issuer,
        "BASCULE_DATABASE_URL": settings.sqlalchemy_url,
        "BASCULE_INSTANCE_DIR": str(settings.instance_dir),
        "BASCULE_KEYS_DIR": str(settings.keys_dir),
        "BASCULE_REDIS_URL": settings.redis_url or "",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(bascule, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def connected(
    app: Flask, corporate_idp: SimpleSamlIdp, base_url: str, monkeypatch: pytest.MonkeyPatch
) -> SimpleSamlIdp:
    """Organisation acme connected to SimpleSAMLphp, and SimpleSAMLphp to us."""
    orgs.create("acme", "Acme")
    db.session.commit()
    settings = app.extensions["bascule"].settings
    added = json.loads(
        run_cli(
            settings, monkeypatch,
            "saml", "add", "acme", "--slug", "corp",
            "--metadata-url", corporate_idp.metadata_url,
            "--domain", "corp.example", "--group-role", "admins=admin", "--json",
        )
    )  # fmt: skip
    assert added["sp_metadata_url"] == f"{base_url}/saml/corp/metadata"
    sp_metadata = httpx.get(added["sp_metadata_url"])
    assert sp_metadata.status_code == 200
    corporate_idp.add_sp_from_metadata(sp_metadata.text)
    return corporate_idp


def sign_in_at_idp(
    client: httpx.Client, idp: SimpleSamlIdp, username: str, password: str
) -> httpx.Response:
    """The browser's trip: our login link, the IdP's form, back to our ACS; our last answer."""
    start = client.get("/saml/corp/login", params={"next": "/account"})
    assert start.status_code == 303
    assert start.headers["location"].startswith(idp.sso_url)
    post = simplesamlphp.login(client, start.headers["location"], username, password)
    assert post.action.endswith("/saml/corp/acs")
    parked = simplesamlphp.submit(client, post)
    assert parked.status_code == 303, parked.text
    return client.get(parked.headers["location"])


def member_role(email: str) -> str:
    db.session.expire_all()
    member = orgs.membership(users.get_by_email(email), orgs.get("acme"))
    assert member is not None
    return member.role.name


def events(name: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)).all())


def signed_in(client: httpx.Client) -> bool:
    return client.get("/account").status_code == 200


def browser(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=30, headers={"Accept": "text/html"})


def test_sign_in_through_simplesamlphp_creates_then_updates_the_account(
    connected: SimpleSamlIdp, base_url: str
) -> None:
    with browser(base_url) as client:
        landed = sign_in_at_idp(client, connected, "alice", "alicepass")
        assert landed.status_code == 303, landed.text
        assert landed.headers["location"] == "/account"
        assert "alice@corp.example" in client.get("/account").text
    alice = users.get_by_email("alice@corp.example")
    assert alice.password_hash is None
    assert alice.name == "Alice Liddell"
    assert member_role("alice@corp.example") == "admin"  # in the IdP group "admins"

    connected.set_user(
        "alice",
        "alicepass",
        {
            "uid": ["alice"],
            "email": ["alice@corp.example"],
            "givenName": ["Alicia"],
            "sn": ["Liddell"],
            "groups": ["staff"],
        },
    )
    with browser(base_url) as client:  # a new browser: the IdP session held the old attributes
        assert sign_in_at_idp(client, connected, "alice", "alicepass").status_code == 303
    db.session.expire_all()
    assert db.session.get(User, alice.id).name == "Alicia Liddell"  # type: ignore[union-attr]
    assert member_role("alice@corp.example") == "member"  # the group is gone, so is the role
    logins = events("saml.login")
    assert [e.details["created"] for e in logins] == [True, False]
    assert logins[1].details["changes"]["role"] == {"before": "admin", "after": "member"}


def test_logout_at_bascule_signs_out_at_the_idp_too(
    connected: SimpleSamlIdp, base_url: str
) -> None:
    with browser(base_url) as client:
        assert sign_in_at_idp(client, connected, "bob", "bobpass").status_code == 303
        account = client.get("/account")
        page = client.post("/logout", data={"csrf_token": csrf_token(account.text)})
        assert page.status_code == 200, page.text
        to_idp = re.search(r'id="continue" href="([^"]+)"', page.text)
        assert to_idp, page.text
        target = to_idp.group(1).replace("&amp;", "&")
        assert target.startswith(connected.slo_url)
        assert not signed_in(client)  # our session ended at once
        back = client.get(target, follow_redirects=False)
        while back.is_redirect and not str(simplesamlphp.redirect_target(back)).startswith(
            base_url
        ):
            back = client.get(simplesamlphp.redirect_target(back))
        assert back.is_redirect, connected.log_tail()
        returned = client.get(str(simplesamlphp.redirect_target(back)))
        assert returned.status_code == 200, returned.text
        assert "signed out" in returned.text
    assert len(events("saml.logout_confirmed")) == 1
    assert not events("saml.rejected")


def test_logout_at_the_idp_ends_the_bascule_session(
    connected: SimpleSamlIdp, base_url: str
) -> None:
    with browser(base_url) as client, browser(base_url) as other:
        assert sign_in_at_idp(client, connected, "bob", "bobpass").status_code == 303
        assert sign_in_at_idp(other, connected, "bob", "bobpass").status_code == 303
        to_us = connected.start_idp_logout(client, f"{base_url}/login")
        location = str(simplesamlphp.redirect_target(to_us))
        assert location.startswith(f"{base_url}/saml/corp/sls?SAMLRequest=")
        answered = client.get(location)
        assert answered.status_code == 303, answered.text
        assert answered.headers["location"].startswith(connected.slo_url)
        done = simplesamlphp.follow_in_idp(client, answered.headers["location"])
        assert str(simplesamlphp.redirect_target(done)) == f"{base_url}/login"
        assert not signed_in(client)  # this browser's session ended
        assert signed_in(other)  # another SAML session did not
    ended = events("saml.logout")
    assert len(ended) == 1 and ended[0].details["sessions_ended"] == 1
