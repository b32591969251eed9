"""Attacks on the gateway, each performed and refused (issue 7, must-show 3).

Header and path payloads go out as raw bytes (tests/gateway/raw.py): httpx would normalise
them before they left. Most run against the echo upstream, which reports what reached it, so
"refused" means both the gateway's answer and that the upstream saw nothing. The assertion
attacks go straight to the messaging app, past the gateway, as an attacker on the app's
network would. The attacks on sessions and on the store run on both backends.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwk, jwt

from examples.messaging.assertion import HEADER as ASSERTION_HEADER
from gateway import identity
from idp.common import gateway_key
from idp.common.sealing import load_keyring
from idp.extensions import db
from idp.runtime import runtime
from idp.services import sessions, users
from idp.services.audit import CLI, Actor
from tests.gateway import raw
from tests.gateway.conftest import EchoStack, Stack, free_port
from tests.gateway.support import (
    COOKIE,
    HTML,
    follow,
    gateway_cookie,
    hidden,
    sign_in_through_gateway,
)
from tests.support import STRONG_PASSWORD, csrf_token, make_user

SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
SPOOF = "SPOOFED"
IDENTITY = {name.lower() for name in identity.IDENTITY_HEADERS}


def _cookie(value: str) -> raw.Header:
    return ("Cookie", f"{COOKIE}={value}")


def _uid(cookie: str) -> str:
    return cookie.rsplit(".", 1)[1]


def _upstream_saw(echo_stack: EchoStack) -> list[tuple[str, str]]:
    return echo_stack.echo.last_headers()


def _values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name.lower()]


# --- identity and forwarding headers ----------------------------------------------------------

SPOOFED_IDENTITY = [
    ("X-Bascule-User", f"{SPOOF}-uid"),
    ("X-Bascule-Email", f"{SPOOF}@evil.example"),
    ("X-Bascule-Org", SPOOF),
    ("X-Bascule-Permissions", f"billing.manage settings.manage {SPOOF}"),
    ("X-Bascule-Assertion", f"{SPOOF}.e30.{SPOOF}"),
    ("x-bascule-user", f"{SPOOF}-lower"),
    ("X-BASCULE-PERMISSIONS", f"{SPOOF} user_data.read"),
    ("X-Bascule-Anything", SPOOF),
    # Older gunicorn, uWSGI and PHP read X_Bascule_User as X-Bascule-User (CGI names).
    ("X_Bascule_User", SPOOF),
    ("X_Bascule_Assertion", SPOOF),
]


def _assert_only_ours(seen: list[tuple[str, str]], uid: str, email: str) -> None:
    """The upstream got each identity header once, with the gateway's value, and no spoof."""
    assert not [(k, v) for k, v in seen if SPOOF in v], seen
    bascule = [k.lower() for k, _ in seen if k.lower().replace("_", "-").startswith("x-bascule-")]
    assert sorted(bascule) == sorted(IDENTITY), bascule
    assert _values(seen, "X-Bascule-User") == [uid]
    assert _values(seen, "X-Bascule-Email") == [email]


@SQLITE
def test_spoofed_identity_headers_never_reach_the_app(echo_stack: EchoStack) -> None:
    # Anonymous, on a public route: the identity headers go up empty, never as sent.
    answer = raw.request(echo_stack.gateway_url, "GET", "/healthz", SPOOFED_IDENTITY)
    assert answer.status == 200
    _assert_only_ours(_upstream_saw(echo_stack), "", "")
    assert _values(_upstream_saw(echo_stack), "X-Bascule-Assertion") == [""]

    # Anonymous, on a protected route: refused before anything reaches the upstream.
    before = len(echo_stack.echo.seen)
    answer = raw.request(echo_stack.gateway_url, "GET", "/inbox", SPOOFED_IDENTITY)
    assert answer.status == 401
    assert len(echo_stack.echo.seen) == before

    # A member: the upstream sees the member, not the headers the member wrote.
    cookie = gateway_cookie(echo_stack, "mia@demo.test", "member")
    answer = raw.request(
        echo_stack.gateway_url, "GET", "/inbox", [_cookie(cookie), *SPOOFED_IDENTITY]
    )
    assert answer.status == 200
    seen = _upstream_saw(echo_stack)
    _assert_only_ours(seen, _uid(cookie), "mia@demo.test")
    assert _values(seen, "X-Bascule-Permissions") == ["messages.edit messages.send"]

    # Claiming billing.manage in a header opens nothing.
    before = len(echo_stack.echo.seen)
    answer = raw.request(
        echo_stack.gateway_url, "GET", "/billing", [_cookie(cookie), *SPOOFED_IDENTITY]
    )
    assert answer.status == 403
    assert len(echo_stack.echo.seen) == before


@SQLITE
def test_spoofed_forwarding_headers_are_replaced(echo_stack: EchoStack) -> None:
    spoofed = [
        ("X-Forwarded-For", "203.0.113.66"),
        ("X-Forwarded-For", "198.51.100.7, 203.0.113.66"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Prefix", "/admin"),
        ("X_Forwarded_Host", "evil.example"),
        ("Forwarded", "for=203.0.113.66;host=evil.example;proto=https"),
        ("X-Real-IP", "203.0.113.66"),
    ]
    # Host is the client's to choose too: it must not become the upstream's X-Forwarded-Host.
    answer = raw.request(echo_stack.gateway_url, "GET", "/healthz", spoofed, host="evil.example")
    assert answer.status == 200
    seen = _upstream_saw(echo_stack)
    public = echo_stack.gateway_url.removeprefix("http://")
    assert _values(seen, "X-Forwarded-For") == ["127.0.0.1"]
    assert _values(seen, "X-Forwarded-Host") == [public]
    assert _values(seen, "X-Forwarded-Proto") == ["http"]
    assert not [(k, v) for k, v in seen if "203.0.113.66" in v or "evil.example" in v], seen
    names = {k.lower().replace("_", "-") for k, _ in seen}
    assert not names & {"forwarded", "x-real-ip", "x-forwarded-port", "x-forwarded-prefix"}


@SQLITE
def test_path_and_method_override_headers_are_dropped(echo_stack: EchoStack) -> None:
    """A route the policy allowed must not be served as another path or method upstream."""
    overrides = [
        ("X-Original-URL", "/billing"),
        ("X-Rewrite-URL", "/billing"),
        ("X-Original-URI", "/billing"),
        ("X-Original-Method", "DELETE"),
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-HTTP-Method", "DELETE"),
        ("X-Method-Override", "DELETE"),
    ]
    answer = raw.request(echo_stack.gateway_url, "GET", "/healthz", overrides)
    assert answer.status == 200
    seen = _upstream_saw(echo_stack)
    assert not {k.lower() for k, _ in seen} & {name.lower() for name, _ in overrides}, seen
    assert echo_stack.echo.seen[-1]["method"] == "GET"
    assert echo_stack.echo.seen[-1]["target"] == "/healthz"


@SQLITE
def test_headers_named_in_connection_do_not_reach_the_app(echo_stack: EchoStack) -> None:
    cookie = gateway_cookie(echo_stack, "mia@demo.test", "member")
    # A client naming the identity header as hop-by-hop: its copy goes, ours still arrives.
    answer = raw.request(
        echo_stack.gateway_url,
        "GET",
        "/inbox",
        [_cookie(cookie), ("Connection", "X-Bascule-User"), ("X-Bascule-User", SPOOF)],
        close=False,
    )
    assert answer.status == 200
    seen = _upstream_saw(echo_stack)
    assert _values(seen, "X-Bascule-User") == [_uid(cookie)]
    assert not [v for k, v in seen if k.lower() == "connection" and "bascule" in v.lower()]

    # Any other header the client names in Connection stops at the gateway.
    answer = raw.request(
        echo_stack.gateway_url,
        "GET",
        "/inbox",
        [
            _cookie(cookie),
            ("Connection", "close, Authorization"),
            ("Connection", "X-Private"),
            ("Authorization", f"Bearer {SPOOF}"),
            ("X-Private", SPOOF),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Proxy-Authorization", f"Basic {SPOOF}"),
            ("Proxy-Connection", "keep-alive"),
        ],
    )
    assert answer.status == 200
    seen = _upstream_saw(echo_stack)
    assert not [(k, v) for k, v in seen if SPOOF in v], seen
    names = {k.lower() for k, _ in seen}
    assert not names & {"authorization", "x-private", "keep-alive", "te", "proxy-connection"}


@SQLITE
def test_session_cookies_stop_at_the_gateway(echo_stack: EchoStack) -> None:
    """The IdP shares the host here, so the browser sends the IdP's session cookie to the
    gateway as well: neither it nor the gateway's own cookie may reach the upstream."""
    cookie = gateway_cookie(echo_stack, "mia@demo.test", "member")
    header = f"theme=dark; {COOKIE}={cookie}; bascule_session=idp-secret; lang=fr"
    answer = raw.request(echo_stack.gateway_url, "GET", "/inbox", [("Cookie", header)])
    assert answer.status == 200
    assert _values(_upstream_saw(echo_stack), "Cookie") == ["theme=dark; lang=fr"]


# --- path confusion ---------------------------------------------------------------------------

# Each is a spelling of /billing (or of a path under it) that some server reads as billing.
BILLING_SPELLINGS = [
    "/billing",
    "/billing/",
    "/billing/plan",
    "/BILLING",
    "/Billing/",
    "/bIlLiNg/PLAN",
    "//billing",
    "///billing//",
    "/./billing",
    "/inbox/../billing",
    "/inbox/./../billing",
    "/%2e%2e/billing",
    "/inbox/%2e%2e/billing",
    "/inbox/%2E%2E/billing",
    "/inbox/.%2e/billing",
    "/%62illing",
    "/b%69lling",
    "/%2fbilling",
    "/billing%2f",
    "/%2Fbilling",
    "/inbox%2f..%2fbilling",
    "/inbox/..%2fbilling",
    "/inbox%5c..%5cbilling",
    "/inbox/..%5Cbilling",
    "/inbox\\..\\billing",
    "/billing\\",
    "/billing;x=1",
    "/billing;",
    "/billing;/plan",
    "/inbox;/../billing",
    "/inbox/..;/billing",
    "/billing%3bx=1",
    "/billing.",
    "/billing./",
    "/billing..",
    "/billing%2e",
    "/billing%20",
    "/billing%09",
    "/billing%00",
    "/billing%",
    "/billing%2",
    "/%u0062illing",
    "/%c0%ae%c0%ae/billing",
    "/inbox/%c0%ae%c0%ae/billing",
    "/inbox/%252e%252e/billing",
    "/billing#fragment",
    "/billing?next=/inbox",
    "billing",
    "http://127.0.0.1/billing",
    "*",
]
# A public route's prefix used to climb into a protected one.
PUBLIC_PREFIX_SPELLINGS = [
    "/_static/../billing",
    "/_static/%2e%2e/billing",
    "/_static/%2E%2E/billing",
    "/_static/.%2E/billing",
    "/_static/x/../../billing",
    "/_static//../billing",
    "/_static/..%2fbilling",
    "/_static/%2e%2e%2fbilling",
    "/_static/..;/billing",
    "/_static/..\\billing",
    "/_static/..%5cbilling",
    "/healthz/../billing",
    "/healthz/%2e%2e/billing",
    "/healthz;/../billing",
    "/_bascule/../billing",
    "/_bascule/%2e%2e/billing",
]


def _refused_everywhere(
    echo_stack: EchoStack, cookie: str | None, targets: list[str], refusals: set[int]
) -> list[str]:
    """Send each target (GET, HEAD and POST); name those that were not refused with one of
    ``refusals`` by the gateway, or that reached the upstream at all."""
    headers = [_cookie(cookie)] if cookie else []
    failures = []
    for target in targets:
        for method in ("GET", "HEAD", "POST"):
            before = len(echo_stack.echo.seen)
            answer = raw.request(echo_stack.gateway_url, method, target, headers)
            if answer.status not in refusals or len(echo_stack.echo.seen) != before:
                failures.append(f"{method} {target} -> {answer.status}")
    return failures


@SQLITE
def test_path_tricks_do_not_reach_a_protected_path(echo_stack: EchoStack) -> None:
    member = gateway_cookie(echo_stack, "mia@demo.test", "member")
    assert _refused_everywhere(echo_stack, member, BILLING_SPELLINGS, {400, 403}) == []
    assert _refused_everywhere(echo_stack, None, BILLING_SPELLINGS, {400, 401, 403}) == []
    # A lower-case method is no other route.
    answer = raw.request(echo_stack.gateway_url, "get", "/billing", [_cookie(member)])
    assert answer.status in (400, 403)
    assert "/billing" not in echo_stack.echo.targets()


@SQLITE
def test_public_prefixes_do_not_reach_a_protected_path(echo_stack: EchoStack) -> None:
    member = gateway_cookie(echo_stack, "mia@demo.test", "member")
    assert _refused_everywhere(echo_stack, None, PUBLIC_PREFIX_SPELLINGS, {400, 401, 403}) == []
    assert _refused_everywhere(echo_stack, member, PUBLIC_PREFIX_SPELLINGS, {400, 403}) == []


@SQLITE
def test_the_upstream_gets_the_path_that_was_judged(echo_stack: EchoStack) -> None:
    """Where a spelling is allowed, the upstream gets its normalised form, never the raw one:
    the two servers cannot disagree about which page it was."""
    member = gateway_cookie(echo_stack, "mia@demo.test", "member")
    for target, forwarded in [
        ("/_static/../inbox", "/inbox"),
        ("//inbox", "/inbox"),
        ("/./inbox/", "/inbox/"),
        ("/%69nbox", "/inbox"),
        ("/messages/1/x/../edit", "/messages/1/edit"),
        ("/inbox?q=%2e%2e/billing", "/inbox?q=%2e%2e/billing"),
    ]:
        answer = raw.request(echo_stack.gateway_url, "GET", target, [_cookie(member)])
        assert answer.status == 200, target
        assert echo_stack.echo.seen[-1]["target"] == forwarded, target


@SQLITE
def test_request_smuggling_is_refused(echo_stack: EchoStack) -> None:
    """A second request hidden in the first one's body (CL.TE, TE.CL, two lengths)."""
    hidden = b"GET /billing HTTP/1.1\r\nHost: x\r\n\r\n"
    attempts = [
        raw.build(
            "POST",
            "/healthz",
            [("Content-Length", str(5 + len(hidden))), ("Transfer-Encoding", "chunked")],
            b"0\r\n\r\n" + hidden,
        ),
        raw.build(
            "POST",
            "/healthz",
            [("Content-Length", "6"), ("Content-Length", "4")],
            b"0\r\n\r\n" + hidden,
        ),
        raw.build(
            "POST",
            "/healthz",
            [("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "identity")],
            b"0\r\n\r\n" + hidden,
        ),
        raw.build("POST", "/healthz", [("Transfer-Encoding", " chunked")], b"0\r\n\r\n" + hidden),
    ]
    for attempt in attempts:
        try:
            answer = raw.send(echo_stack.gateway_url, attempt)
        except ConnectionError:
            continue  # the gateway hung up: refused too
        assert answer.status in (400, 403), attempt
    assert "/billing" not in echo_stack.echo.targets()


# --- sign-in -----------------------------------------------------------------------------------

OPEN_REDIRECTS = [
    "https://evil.example/",
    "//evil.example",
    "//evil.example/inbox",
    "/\\evil.example",
    "\\\\evil.example",
    "/%5cevil.example",
    "https:evil.example",
    "http://127.0.0.1@evil.example/",
    "/\t/evil.example",
    " //evil.example",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
]


def _hops(client: httpx.Client, url: str, limit: int = 10) -> list[str]:
    """Every URL a browser visits from ``url`` on, following redirects."""
    response = client.get(url, headers=HTML)
    visited = [str(response.url)]
    for _ in range(limit):
        if response.status_code not in (301, 302, 303, 307, 308):
            return visited
        response = client.get(response.url.join(response.headers["location"]), headers=HTML)
        visited.append(str(response.url))
    raise AssertionError(f"too many redirects: {visited}")


@SQLITE
def test_post_login_return_url_cannot_leave_the_gateway(echo_stack: EchoStack) -> None:
    make_user(echo_stack.idp, "mia@demo.test", org_slug="demo", role="member")
    ours = (echo_stack.gateway_url + "/", echo_stack.idp_url + "/")
    with httpx.Client(timeout=30) as client:
        sign_in_through_gateway(client, echo_stack, "mia@demo.test", STRONG_PASSWORD)
        # A return URL of our own is honoured: the check below is not vacuous.
        hops = _hops(client, echo_stack.gateway_url + "/_bascule/login?rd=/inbox%3Fx%3D1")
        assert hops[-1] == echo_stack.gateway_url + "/inbox?x=1"
        for rd in OPEN_REDIRECTS:
            url = httpx.URL(echo_stack.gateway_url + "/_bascule/login", params={"rd": rd})
            hops = _hops(client, str(url))
            assert all(hop.startswith(ours) for hop in hops), (rd, hops)
            assert hops[-1].startswith(echo_stack.gateway_url + "/"), (rd, hops)


def _password_sign_in(client: httpx.Client, stack: Stack, email: str) -> httpx.Response:
    """Open the gateway, be sent to the IdP's sign-in form, post it; the IdP's answer."""
    page = follow(client, client.get(stack.gateway_url + "/inbox", headers=HTML))
    form = {"email": email, "password": STRONG_PASSWORD, "csrf_token": csrf_token(page.text)}
    form["next"] = hidden(page.text, "next")
    return client.post(stack.idp_url + "/login", data=form, headers=HTML)


def _to_callback(client: httpx.Client, stack: Stack, email: str) -> str:
    """Sign in at the IdP for a login the gateway started for ``client``; the callback URL
    the browser is sent back to, not yet visited."""
    response = _password_sign_in(client, stack, email)
    for _ in range(5):
        location = str(response.url.join(response.headers["location"]))
        if location.startswith(stack.gateway_url + "/_bascule/callback"):
            return location
        response = client.get(location, headers=HTML)
    raise AssertionError("never sent back to the gateway")


@SQLITE
def test_callback_without_the_state_cookie_is_refused(echo_stack: EchoStack) -> None:
    """Login CSRF: an attacker signs in as themself, and sends a victim to the callback to be
    signed in to the attacker's account. The victim's browser lacks the state cookie."""
    make_user(echo_stack.idp, "eve@demo.test", org_slug="demo", role="member")
    with httpx.Client(timeout=30) as attacker, httpx.Client(timeout=30) as victim:
        callback = _to_callback(attacker, echo_stack, "eve@demo.test")
        refused = victim.get(callback, headers=HTML)
        assert refused.status_code == 400
        assert COOKIE not in refused.cookies
        # The victim's own login in progress has a state cookie, but for another state.
        victim.get(echo_stack.gateway_url + "/inbox", headers=HTML)
        assert victim.get(callback, headers=HTML).status_code == 400
        assert COOKIE not in victim.cookies
        # The browser that started the sign-in completes it with the same answer.
        landed = attacker.get(callback, headers=HTML)
        assert landed.status_code == 302 and landed.headers["location"] == "/inbox"


# --- the assertion, sent to the app past the gateway ------------------------------------------


def _claims(stack: Stack, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": stack.gateway_url,
        "aud": "messaging",
        "sub": "5f0e6d5e-0000-4000-8000-000000000001",
        "email": "mallory@demo.test",
        "org": "demo",
        "permissions": ["billing.manage", "settings.manage", "user_data.read"],
        "sid": "0" * 64,
        "iat": now,
        "exp": now + 60,
    }
    return {**claims, **changes}


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part(header)}.{part(claims)}."


@SQLITE
def test_forged_or_expired_assertions_are_refused_by_the_app(stack: Stack) -> None:
    keyring = load_keyring(stack.settings.keys_dir, stack.settings.data_key)
    real = gateway_key.signer(stack.settings.keys_dir, keyring)
    other = jwk.ECKey.generate_key("P-256", private=True)
    header = {"alg": "ES256", "kid": real.kid, "typ": "JWT"}
    now = int(time.time())
    forged = {
        "a key of the attacker's under the gateway's kid": jwt.encode(
            header, _claims(stack), other
        ),
        "alg none": _unsigned({"alg": "none", "kid": real.kid}, _claims(stack)),
        "expired": real.sign(_claims(stack, iat=now - 120, exp=now - 60)),
        "lives for an hour": real.sign(_claims(stack, exp=now + 3600)),
        "for another upstream": real.sign(_claims(stack, aud="wiki")),
        "issued by someone else": real.sign(_claims(stack, iss=stack.idp_url)),
        "signature of another token": (
            real.sign(_claims(stack, email="x@demo.test")).rsplit(".", 1)[0]
            + "."
            + real.sign(_claims(stack)).rsplit(".", 1)[1]
        ),
        "garbage": "not.a.jwt",
    }
    with httpx.Client(base_url=stack.upstream_url, timeout=30) as app:
        assert app.get("/billing").status_code == 401
        plain = {
            "X-Bascule-User": "someone",
            "X-Bascule-Email": "mallory@demo.test",
            "X-Bascule-Org": "demo",
            "X-Bascule-Permissions": "billing.manage",
        }
        assert app.get("/billing", headers=plain).status_code == 401
        for what, token in forged.items():
            answer = app.get("/billing", headers={ASSERTION_HEADER: token})
            assert answer.status_code == 401, what
        # The same request with a fresh assertion of the real key passes: the refusals above
        # are the checks at work, not a broken app.
        assert app.get("/billing", headers={ASSERTION_HEADER: real.sign(_claims(stack))}).is_success


# --- sessions and the store (both backends) ---------------------------------------------------


def test_a_disabled_users_session_is_refused(echo_stack: EchoStack) -> None:
    cookie = gateway_cookie(echo_stack, "mia@demo.test", "member")
    assert raw.request(echo_stack.gateway_url, "GET", "/inbox", [_cookie(cookie)]).status == 200
    user = users.get_by_email("mia@demo.test")
    users.set_active(
        user, False, store=runtime().store, actor=Actor(email="operator (test)"), origin=CLI
    )
    db.session.commit()
    assert raw.request(echo_stack.gateway_url, "GET", "/inbox", [_cookie(cookie)]).status == 401
    browser = raw.request(echo_stack.gateway_url, "GET", "/inbox", [_cookie(cookie), *HTML.items()])
    assert browser.status == 302
    assert (browser.header("Location") or "").startswith(echo_stack.idp_url + "/oauth2/authorize")
    forward_auth = raw.request(
        echo_stack.gateway_url,
        "GET",
        "/_bascule/auth",
        [_cookie(cookie), ("X-Original-URI", "/inbox")],
    )
    assert forward_auth.status == 401
    # Signing in again is refused by the IdP: no way back to a gateway session.
    with httpx.Client(timeout=30) as client:
        answer = follow(client, _password_sign_in(client, echo_stack, "mia@demo.test"))
        assert str(answer.url).startswith(echo_stack.idp_url + "/login")
        assert COOKIE not in client.cookies


def test_a_revoked_idp_session_is_refused_at_the_next_request(echo_stack: EchoStack) -> None:
    cookie = gateway_cookie(echo_stack, "mia@demo.test", "member")
    other = gateway_cookie(echo_stack, "noor@demo.test", "member")
    sid, uid = cookie.split(".")[1:]
    assert raw.request(echo_stack.gateway_url, "GET", "/inbox", [_cookie(cookie)]).status == 200
    # The user ends this one IdP session (e.g. from /account/sessions).
    assert sessions.revoke(runtime().store, uid, sid)
    assert raw.request(echo_stack.gateway_url, "GET", "/inbox", [_cookie(cookie)]).status == 401
    browser = raw.request(echo_stack.gateway_url, "GET", "/inbox", [_cookie(cookie), *HTML.items()])
    assert browser.status == 302
    assert (browser.header("Location") or "").startswith(echo_stack.idp_url + "/oauth2/authorize")
    # Somebody else's session is untouched.
    assert raw.request(echo_stack.gateway_url, "GET", "/inbox", [_cookie(other)]).status == 200


def test_a_cookie_with_another_users_ids_is_refused(echo_stack: EchoStack) -> None:
    member = gateway_cookie(echo_stack, "mia@demo.test", "member")
    owner = gateway_cookie(echo_stack, "olga@demo.test", "owner")
    token, sid, uid = member.split(".")
    o_token, o_sid, o_uid = owner.split(".")
    for swapped in [
        f"{token}.{o_sid}.{o_uid}",  # the member's token, the owner's session and id
        f"{token}.{sid}.{o_uid}",
        f"{token}.{o_sid}.{uid}",
        f"{o_token[:-1]}{'A' if o_token[-1] != 'A' else 'B'}.{o_sid}.{o_uid}",  # guessed token
        f"{token}.{o_sid.upper()}.{o_uid}",
        f"{token}.{o_sid}.{o_uid}.extra",
    ]:
        for path in ("/inbox", "/billing"):
            answer = raw.request(echo_stack.gateway_url, "GET", path, [_cookie(swapped)])
            assert answer.status == 401, (swapped, path)
    # Both genuine cookies still work as themselves.
    assert raw.request(echo_stack.gateway_url, "GET", "/billing", [_cookie(owner)]).status == 200
    assert raw.request(echo_stack.gateway_url, "GET", "/billing", [_cookie(member)]).status == 403


def test_store_down_fails_closed(echo_stack: EchoStack, tmp_path: Path) -> None:
    cookie = gateway_cookie(echo_stack, "mia@demo.test", "member")
    dead_port = free_port()  # nothing listens there
    if echo_stack.settings.redis_url:
        broken = {"redis_url": f"redis://127.0.0.1:{dead_port}/0"}
    else:
        broken = {"database_url": f"sqlite:///{tmp_path}/missing/dir/bascule.db"}
    reached = len(echo_stack.echo.seen)
    with echo_stack.gateway(**broken) as gateway:
        for headers in ([_cookie(cookie)], [_cookie(cookie), *HTML.items()], [*HTML.items()]):
            answer = raw.request(gateway, "GET", "/inbox", headers)
            assert answer.status == 503, (headers, answer.status, answer.body[:200])
        forward_auth = raw.request(
            gateway, "GET", "/_bascule/auth", [_cookie(cookie), ("X-Original-URI", "/inbox")]
        )
        assert forward_auth.status == 503
        assert raw.request(gateway, "GET", "/_bascule/readyz").status == 503
    assert len(echo_stack.echo.seen) == reached
