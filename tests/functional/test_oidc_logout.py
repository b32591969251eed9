"""Logout for relying parties, through the real HTTP stack.

RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): a valid ``id_token_hint`` signs
out at once and returns to a registered ``post_logout_redirect_uri`` with the ``state``; an
unregistered address gets our error page and no redirect; without a hint the user confirms
through a CSRF-protected form.

Back-channel logout (OpenID Connect Back-Channel Logout 1.0): a tiny HTTP server on loopback,
registered as the client's ``backchannel_logout_uri``, receives the logout token whatever
ended the session; the token is checked as a relying party would, against the JWKS.
"""

from __future__ import annotations

import email
import email.policy
import queue
import re
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
from click.testing import CliRunner
from flask import Flask
from joserfc import jwk, jwt

from idp.cli import admin as admin_cli
from idp.cli import main as bascule
from idp.models import User
from idp.services.oidc import logout
from tests.oidc_support import (
    JANE,
    POST_LOGOUT_REDIRECT_URI,
    RP,
    assert_error_page,
    audit_events,
    auth_request,
    forms,
    jwks,
    oauth_error,
    register,
    sign_in_tokens,
    userinfo,
    verify,
)
from tests.support import OTHER_STRONG_PASSWORD, Browsers, post_form, sid_of

DELIVERY_WAIT_SECONDS = 10  # logout tokens go out on a thread pool: wait for one, never sleep
RESET_LINK = re.compile(r"https?://\S+(/password/reset/[A-Za-z0-9_-]+)")


def is_signed_in(browser: httpx.Client) -> bool:
    return browser.get("/account").status_code == 200


def end_session(browser: httpx.Client, **params: str) -> httpx.Response:
    return browser.get("/oauth2/logout", params=params)


# --- RP-initiated logout -------------------------------------------------------------------


def test_logout_with_a_valid_hint_returns_to_the_client_with_its_state(
    rp: RP, jane: User, browsers: Browsers
) -> None:
    browser = browsers.new()
    issued = sign_in_tokens(browser, rp, auth_request(rp, scope="openid email"))
    answer = end_session(
        browser,
        id_token_hint=issued.id_token,
        post_logout_redirect_uri=POST_LOGOUT_REDIRECT_URI,
        state="bye now",
    )
    assert answer.status_code == 302
    assert answer.headers["location"] == POST_LOGOUT_REDIRECT_URI + "?state=bye+now"
    assert not is_signed_in(browser)
    # The grant bound to the session ended with it.
    assert oauth_error(rp.refresh(issued.refresh)) == "invalid_grant"
    [event] = audit_events("oidc.end_session")
    assert (event.actor_id, event.target, event.details) == (
        jane.id, rp.client_id, {"redirect": True},
    )  # fmt: skip

    # Without a session there is nothing to end: back to the client all the same (POST too).
    hint_target = POST_LOGOUT_REDIRECT_URI
    again = browser.post(
        "/oauth2/logout",
        data={"id_token_hint": issued.id_token, "post_logout_redirect_uri": hint_target},
    )
    assert again.headers["location"] == POST_LOGOUT_REDIRECT_URI


def test_logout_to_an_address_not_proven_gets_the_error_page_and_no_redirect(
    app: Flask, rp: RP, browsers: Browsers
) -> None:
    other = register(
        app, rp.base_url, "Other RP", post_logout_redirect_uris=["http://localhost:4000/bye"]
    )
    browser = browsers.new()
    hint = sign_in_tokens(browser, rp).id_token
    forged = jwt.encode(
        {"alg": "RS256"},
        {"iss": rp.base_url, "aud": rp.client_id},
        jwk.RSAKey.generate_key(2048),
    )
    refused = [
        {"id_token_hint": hint, "post_logout_redirect_uri": "https://evil.test/bye"},
        {"id_token_hint": hint, "post_logout_redirect_uri": POST_LOGOUT_REDIRECT_URI + "/x"},
        {"id_token_hint": hint, "post_logout_redirect_uri": "http://localhost:4000/bye"},  # other's
        {"client_id": rp.client_id, "post_logout_redirect_uri": "https://evil.test/bye"},
        {"post_logout_redirect_uri": POST_LOGOUT_REDIRECT_URI},  # whose? nobody says
        {"id_token_hint": hint, "client_id": other.client_id},  # they disagree
        {"id_token_hint": forged, "post_logout_redirect_uri": POST_LOGOUT_REDIRECT_URI},
        {"id_token_hint": "not-a-jwt"},
        {"client_id": "no-such-client"},
    ]
    for params in refused:
        answer = end_session(browser, **params)
        assert answer.status_code == 400, params
        assert_error_page(answer)
    assert is_signed_in(browser)
    assert audit_events("oidc.end_session") == []


def test_logout_without_a_hint_is_confirmed_through_a_csrf_protected_form(
    rp: RP, browsers: Browsers
) -> None:
    browser = browsers.signed_in()
    params = {
        "client_id": rp.client_id,
        "post_logout_redirect_uri": POST_LOGOUT_REDIRECT_URI,
        "state": "s1",
    }
    page = end_session(browser, **params)
    assert page.status_code == 200 and "Test RP asks" in page.text
    assert is_signed_in(browser)  # asking is not doing
    [(action, fields)] = [f for f in forms(page.text) if f[0] == "/oauth2/logout/confirm"]
    assert fields["csrf_token"] and fields["state"] == "s1"

    forged = browser.post(action, data={k: v for k, v in fields.items() if k != "csrf_token"})
    assert forged.status_code == 400 and "location" not in forged.headers
    assert is_signed_in(browser)

    confirmed = browser.post(action, data=fields)
    assert confirmed.headers["location"] == POST_LOGOUT_REDIRECT_URI + "?state=s1"
    assert not is_signed_in(browser)


def test_a_hint_that_does_not_name_this_session_asks_before_signing_out(
    rp: RP, browsers: Browsers
) -> None:
    """Otherwise any page could sign a user out with an ID token its own RP holds (logout
    CSRF): the hint proves the request only for the session it names."""
    elsewhere = sign_in_tokens(browsers.new(), rp)  # another browser's session
    renewed = rp.refresh(elsewhere.refresh).json()["id_token"]  # offline: names no session
    browser = browsers.signed_in()
    for hint in (elsewhere.id_token, renewed):
        page = end_session(browser, id_token_hint=hint)
        assert page.status_code == 200, verify(rp.base_url, hint).claims
        assert forms(page.text)[0][0] == "/oauth2/logout/confirm"
        assert is_signed_in(browser)
    bare = end_session(browser)  # no parameters at all: confirm, then our signed-out page
    [(action, fields)] = [f for f in forms(bare.text) if f[0] == "/oauth2/logout/confirm"]
    done = browser.post(action, data=fields)
    assert done.status_code == 200 and "You are signed out" in done.text
    assert not is_signed_in(browser)


def test_re_authenticating_for_one_client_does_not_sign_out_of_the_others(
    app: Flask, base_url: str, rp: RP, browsers: Browsers, receiver: Receiver
) -> None:
    watcher = register(app, base_url, "Watcher", backchannel_logout_uri=receiver.url)
    browser = browsers.new()
    theirs = sign_in_tokens(browser, watcher, auth_request(watcher, scope="openid email"))
    sign_in_tokens(browser, rp, auth_request(rp, prompt="login"))  # password again
    assert audit_events("oidc.backchannel_logout") == []
    assert watcher.refresh(theirs.refresh).status_code == 200


# --- back-channel logout -------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    content_type: str
    form: dict[str, list[str]]


class Receiver:
    """A relying party's back-channel logout endpoint on loopback: records what is POSTed."""

    def __init__(self) -> None:
        received: queue.Queue[Delivery] = queue.Queue()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.put(
                    Delivery(self.headers.get("Content-Type", ""), parse_qs(body.decode()))
                )
                self.send_response(200)
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self.received = received
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_port}/backchannel-logout"
        self.thread = threading.Thread(
            target=self.http.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def next(self) -> Delivery:
        return self.received.get(timeout=DELIVERY_WAIT_SECONDS)

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


def _post_logout(app: Flask, browser: httpx.Client, other: httpx.Client) -> None:
    assert post_form(browser, "/logout", {}, page=browser.get("/account").text).status_code == 302


def _sessions_page(app: Flask, browser: httpx.Client, other: httpx.Client) -> None:
    sid = sid_of(browser)
    page = other.get("/account/sessions").text
    assert f"/account/sessions/{sid}/revoke" in page
    answer = post_form(other, f"/account/sessions/{sid}/revoke", {}, page=page)
    assert answer.status_code == 302


def _cli_sessions_revoke(app: Flask, browser: httpx.Client, other: httpx.Client) -> None:
    """``bascule sessions revoke --user``, run in this test's app (and so its store)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(admin_cli, "app_context", lambda: nullcontext(app))
        result = CliRunner().invoke(bascule, ["sessions", "revoke", "--user", JANE, "--json"])
    assert result.exit_code == 0, result.output
    assert '"sessions_revoked": 2' in result.stdout


def _password_reset(app: Flask, browser: httpx.Client, other: httpx.Client) -> None:
    assert post_form(other, "/password/forgot", {"email": JANE}).status_code == 200
    outbox = Path(app.extensions["bascule"].settings.instance_dir) / "outbox"
    [mail] = sorted(outbox.glob("*.eml"))
    message = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
    match = RESET_LINK.search(message.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    assert match, "no reset link in the mail"
    new = {"password": OTHER_STRONG_PASSWORD, "password_confirm": OTHER_STRONG_PASSWORD}
    assert post_form(other, match.group(1), new).status_code == 200


def _rp_initiated(app: Flask, browser: httpx.Client, other: httpx.Client) -> None:
    page = browser.get("/oauth2/logout")
    [(action, fields)] = [f for f in forms(page.text) if f[0] == "/oauth2/logout/confirm"]
    assert browser.post(action, data=fields).status_code == 200


ENDINGS = {
    "sign-out (POST /logout)": (_post_logout, "RS256"),
    "sessions page revoke": (_sessions_page, "ES256"),
    "bascule sessions revoke --user": (_cli_sessions_revoke, "RS256"),
    "password reset": (_password_reset, "ES256"),
    "RP-initiated logout": (_rp_initiated, "RS256"),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_back_channel_logout_token_whatever_ends_the_session(
    app: Flask,
    base_url: str,
    jane: User,
    browsers: Browsers,
    receiver: Receiver,
    ending: str,
) -> None:
    end, alg = ENDINGS[ending]
    rp = register(app, base_url, backchannel_logout_uri=receiver.url, id_token_alg=alg)
    # Registered for back-channel logout too, but never signed in to from that session.
    bystander = register(app, base_url, "Bystander", backchannel_logout_uri=receiver.url)
    browser, other = browsers.new(), browsers.signed_in()
    issued = sign_in_tokens(browser, rp, auth_request(rp, scope="openid email"))
    sid = sid_of(browser)

    end(app, browser, other)

    delivery = receiver.next()
    assert delivery.content_type == "application/x-www-form-urlencoded"
    [token] = delivery.form["logout_token"]
    checked = jwt.decode(token, jwks(base_url), algorithms=["RS256", "ES256"])
    assert checked.header["typ"] == "logout+jwt" and checked.header["alg"] == alg
    claims = checked.claims
    assert claims["iss"] == base_url
    assert claims["aud"] == rp.client_id != bystander.client_id
    assert claims["sub"] == jane.id
    assert claims["sid"] == sid == jwt.decode(issued.id_token, jwks(base_url)).claims["sid"]
    assert claims["events"] == {logout.BACKCHANNEL_EVENT: {}}
    assert "nonce" not in claims  # Back-Channel Logout 2.4: forbidden
    assert claims["jti"] and claims["iat"] < claims["exp"] <= claims["iat"] + 300

    [sent] = audit_events("oidc.backchannel_logout")  # to the signed-in client only
    assert (sent.target, sent.details["sid"]) == (rp.client_id, sid)
    assert not is_signed_in(browser)
    assert oauth_error(rp.refresh(issued.refresh)) == "invalid_grant"
    assert userinfo(base_url, issued.access).status_code == 401
