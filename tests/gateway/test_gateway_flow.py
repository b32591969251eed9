"""Through the real gateway: sign in, pass on, and revocation taking effect at once."""

from __future__ import annotations

import httpx
import pytest

from idp.runtime import runtime
from idp.services import authz, orgs, roles, sessions
from tests.gateway.conftest import Stack
from tests.gateway.support import HTML, follow, sign_in_through_gateway
from tests.support import STRONG_PASSWORD, cli_context, make_user


def test_sign_in_send_and_lose_the_permission(stack: Stack) -> None:
    user = make_user(stack.idp, "mia@demo.test", org_slug="demo", role="member")
    with httpx.Client(timeout=30) as client:
        inbox = sign_in_through_gateway(client, stack, "mia@demo.test", STRONG_PASSWORD)
        assert inbox.status_code == 200 and str(inbox.url) == stack.gateway_url + "/inbox"
        assert "mia@demo.test" in inbox.text
        sent = client.post(
            stack.gateway_url + "/messages",
            data={"body": "hello through the gateway", "csrf_token": _csrf(inbox.text)},
            headers=HTML,
        )
        assert sent.status_code in (302, 303), sent.text
        assert "hello through the gateway" in follow(client, sent).text

        # The member loses messages.send: the very next send is refused by the gateway.
        org = orgs.get("demo")
        member = orgs.membership(user, org)
        assert member is not None
        sender = roles.create(authz.operator(org), cli_context(), "reader", frozenset())
        from idp.services import members

        members.change_role(authz.operator(org), cli_context(), member.id, sender.name)
        refused = client.post(
            stack.gateway_url + "/messages",
            data={"body": "again", "csrf_token": _csrf(inbox.text)},
            headers=HTML,
        )
        assert refused.status_code == 403

        # The session is revoked at the IdP: the next request goes back to sign in.
        sessions.revoke_all(runtime().store, user.id)
        again = client.get(stack.gateway_url + "/inbox", headers=HTML)
        assert again.status_code == 302
        assert again.headers["location"].startswith(stack.idp_url + "/oauth2/authorize")


def test_api_caller_without_session_gets_401_json(stack: Stack) -> None:
    answer = httpx.get(stack.gateway_url + "/inbox")
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_forward_auth_answers_for_nginx(stack: Stack) -> None:
    make_user(stack.idp, "mia@demo.test", org_slug="demo", role="member")
    with httpx.Client(timeout=30) as client:
        sign_in_through_gateway(client, stack, "mia@demo.test", STRONG_PASSWORD)
        cookie = {"Cookie": f"bascule_gateway={client.cookies.get('bascule_gateway')}"}
        allowed = httpx.get(
            stack.gateway_url + "/_bascule/auth",
            headers={**cookie, "X-Original-URI": "/inbox", "X-Original-Method": "GET"},
        )
        assert allowed.status_code == 200
        assert allowed.headers["X-Bascule-Email"] == "mia@demo.test"
        assert allowed.headers["X-Bascule-Permissions"] == "messages.edit messages.send"
        denied = httpx.get(
            stack.gateway_url + "/_bascule/auth",
            headers={**cookie, "X-Original-URI": "/billing", "X-Original-Method": "GET"},
        )
        assert denied.status_code == 403
    anonymous = httpx.get(
        stack.gateway_url + "/_bascule/auth", headers={"X-Original-URI": "/inbox"}
    )
    assert anonymous.status_code == 401


def _csrf(page: str) -> str:
    import re

    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1)
