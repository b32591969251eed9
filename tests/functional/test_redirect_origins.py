"""After sign-in, ``next`` may lead to an origin the organisation allowed, and nowhere else."""

from __future__ import annotations

import httpx

from idp.extensions import db
from idp.services import orgs
from tests.support import STRONG_PASSWORD, make_user, sign_in


def test_allowed_origin_of_the_users_organisation(app, browser_client: httpx.Client) -> None:
    make_user(app)
    make_user(app, "omar@other.test", org_slug="other")
    orgs.get("acme").redirect_origins = ["https://app.acme.test"]
    db.session.commit()

    allowed = sign_in(browser_client, "jane@acme.test", STRONG_PASSWORD, "https://app.acme.test/in")
    assert allowed.headers["location"] == "https://app.acme.test/in"

    with httpx.Client(base_url=str(browser_client.base_url)) as other:
        # The same address is not allowed for a member of an organisation that did not list it.
        refused = sign_in(other, "omar@other.test", STRONG_PASSWORD, "https://app.acme.test/in")
        assert refused.headers["location"] == "/account"


def test_gateway_is_an_allowed_return_address(app, browser_client: httpx.Client) -> None:
    make_user(app)
    gateway = app.extensions["bascule"].settings.gateway_url
    response = sign_in(browser_client, "jane@acme.test", STRONG_PASSWORD, f"{gateway}/inbox")
    assert response.headers["location"] == f"{gateway}/inbox"


def test_unlisted_origin_is_refused(app, browser_client: httpx.Client) -> None:
    make_user(app)
    orgs.get("acme").redirect_origins = ["https://app.acme.test"]
    db.session.commit()
    for target in ["https://evil.test/", "https://app.acme.test.evil.test/", "//evil.test/"]:
        with httpx.Client(base_url=str(browser_client.base_url)) as client:
            response = sign_in(client, "jane@acme.test", STRONG_PASSWORD, target)
            assert response.headers["location"] == "/account", target
