"""Through the real gateway: sign in, pass on, and revocation taking effect at once."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from idp.extensions import db
from idp.runtime import runtime
from idp.services import audit, authz, orgs, roles, sessions
from tests.gateway.conftest import Stack
from tests.gateway.support import HTML, follow, hidden, sign_in_through_gateway
from tests.support import STRONG_PASSWORD, cli_context, csrf_token, make_user


def test_sign_in_send_and_lose_the_permission(stack: Stack) -> None:
    user = make_user(stack.idp, "mia@demo.test", org_slug="demo", role="member")
    with httpx.Client(timeout=30) as client:
        inbox = sign_in_through_gateway(client, stack, "mia@demo.test", STRONG_PASSWORD)
        assert inbox.status_code == 200 and str(inbox.url) == stack.gateway_url + "/inbox"
        assert "mia@demo.test" in inbox.text
        sent = client.post(
            stack.gateway_url + "/messages",
            data={"body": "hello through the gateway", "csrf_token": csrf_token(inbox.text)},
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
            data={"body": "again", "csrf_token": csrf_token(inbox.text)},
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


def _age_sessions(user_id: str, seconds: float) -> None:
    """Pretend the user's IdP sessions signed in ``seconds`` earlier than they did."""
    store = runtime().store
    for sid in store.smembers(sessions.USER_INDEX_PREFIX + user_id):
        raw = store.get(sessions.SESSION_PREFIX + sid)
        assert raw is not None
        record = json.loads(raw)
        record["auth_time"] -= seconds
        store.put(sessions.SESSION_PREFIX + sid, json.dumps(record), 600)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_billing_asks_a_stale_sign_in_to_sign_in_again(stack: Stack) -> None:
    owner = make_user(stack.idp, "olga@demo.test", org_slug="demo", role="owner")
    with httpx.Client(timeout=30) as client:
        billing = sign_in_through_gateway(
            client, stack, "olga@demo.test", STRONG_PASSWORD, "/billing"
        )
        assert billing.status_code == 200 and str(billing.url).endswith("/billing")

        _age_sessions(owner.id, 3600)  # the demo policy wants a sign-in within 15 minutes
        again = client.get(stack.gateway_url + "/billing", headers=HTML)
        assert again.status_code == 302 and "prompt=login" in again.headers["location"]
        confirm = follow(client, again)
        assert "/login/reauth" in str(confirm.url) and "Confirm it is you" in confirm.text
        back = client.post(
            stack.idp_url + "/login",
            data={
                "email": "olga@demo.test",
                "password": STRONG_PASSWORD,
                "csrf_token": csrf_token(confirm.text),
                "next": hidden(confirm.text, "next"),
            },
            headers=HTML,
        )
        landed = follow(client, back)
        assert landed.status_code == 200 and str(landed.url) == stack.gateway_url + "/billing"

        # An API client is told, not redirected.
        api = client.get(stack.gateway_url + "/billing")
        assert api.status_code == 200
        _age_sessions(owner.id, 3600)
        refused = client.get(stack.gateway_url + "/billing")
        assert refused.status_code == 401 and "Sign in again" in refused.text


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_decisions_reach_the_audit_log_and_metrics(stack: Stack) -> None:
    make_user(stack.idp, "mo@demo.test", org_slug="demo", role="member")
    with httpx.Client(timeout=30) as client:
        sign_in_through_gateway(client, stack, "mo@demo.test", STRONG_PASSWORD)
        assert client.get(stack.gateway_url + "/billing", headers=HTML).status_code == 403
        metrics = client.get(stack.gateway_url + "/_bascule/metrics").text
    assert 'bascule_gateway_decisions_total{result="deny"}' in metrics
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the gateway sends its decisions every 2 s
        db.session.expire_all()
        found = [e for e in audit.events(None) if e.event == "gateway.decision"]
        if found:
            break
        time.sleep(0.2)
    denial = next(e for e in found if e.details["result"] == "deny")
    assert denial.outcome == "failure" and denial.actor_email == "mo@demo.test"
    assert denial.details["path"] == "/billing" and denial.details["method"] == "GET"
    assert denial.details["permissions"] == ["messages.edit", "messages.send"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_forward_auth_refuses_ambiguous_originals_and_asks_for_step_up(stack: Stack) -> None:
    owner = make_user(stack.idp, "olga@demo.test", org_slug="demo", role="owner")
    with httpx.Client(timeout=30) as client:
        sign_in_through_gateway(client, stack, "olga@demo.test", STRONG_PASSWORD)
        cookie = {"Cookie": f"bascule_gateway={client.cookies.get('bascule_gateway')}"}
        auth = stack.gateway_url + "/_bascule/auth"
        # A client's own X-Original-URI passed through by a proxy that sets X-Forwarded-Uri.
        two = {**cookie, "X-Original-URI": "/inbox", "X-Forwarded-Uri": "/billing"}
        assert httpx.get(auth, headers=two).status_code == 403
        methods = {**cookie, "X-Original-URI": "/inbox", "X-Original-Method": "GET",
                   "X-Forwarded-Method": "POST"}  # fmt: skip
        assert httpx.get(auth, headers=methods).status_code == 403

        _age_sessions(owner.id, 3600)
        stale = httpx.get(auth, headers={**cookie, "X-Original-URI": "/billing"})
        assert stale.status_code == 401
        login = stale.headers["X-Bascule-Login"]
        assert "reauth=1" in login
        start = client.get(login, headers=HTML)
        assert start.status_code == 302 and "prompt=login" in start.headers["location"]
