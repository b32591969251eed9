"""A person at a real browser signs in to a third-party application through Bascule: the
sign-in page, the consent page (allow, then deny), and the "Apps" page where consent is
withdrawn. The application is a tiny HTTP server on loopback that only shows what it got.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from idp.extensions import db
from idp.services.oidc import clients
from tests.browser.support import chromium, fill_sign_in, new_tab, shot
from tests.support import STRONG_PASSWORD, make_user

pytestmark = pytest.mark.browser

from playwright.sync_api import Page, expect  # noqa: E402


class _Landing(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>Wiki</title><h1>Back at the wiki</h1>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def relying_party() -> Iterator[str]:
    """The third-party application's callback URL, served on loopback."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Landing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/callback"
    server.shutdown()
    server.server_close()


@pytest.fixture
def page(base_url: str) -> Iterator[Page]:
    with chromium() as (browser, problems):
        yield new_tab(browser, problems, base_url=base_url, width=1024, height=720)


def _register(app, redirect_uri: str, first_party: bool = False) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    with app.app_context():
        created = clients.create_client("Team Wiki", [redirect_uri], first_party=first_party)
        db.session.commit()
        assert created.secret is not None
        return created.client.id, created.secret


def _authorize_url(client_id: str, redirect_uri: str, verifier: str) -> Callable[[str], str]:
    def url(state: str) -> str:
        return "/oauth2/authorize?" + urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "scope": "openid email permissions",
                "state": state,
                "nonce": "n-" + state,
                "code_challenge": create_s256_code_challenge(verifier),
                "code_challenge_method": "S256",
            }
        )

    return url


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_first_party_sign_in_lands_back_without_consent(  # type: ignore[no-untyped-def]
    app, relying_party: str, page: Page
) -> None:
    """The sign-in form's redirects end at the client: the page's CSP must allow that hop."""
    make_user(app)
    client_id, _ = _register(app, relying_party, first_party=True)
    page.goto(_authorize_url(client_id, relying_party, "w" * 50)("s1"))
    fill_sign_in(page, "jane@acme.test", STRONG_PASSWORD)
    expect(page.get_by_role("heading", name="Back at the wiki")).to_be_visible()
    assert "code" in parse_qs(urlsplit(page.url).query)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_consent_allow_deny_and_withdraw(  # type: ignore[no-untyped-def]
    app, base_url: str, relying_party: str, page: Page
) -> None:
    make_user(app)
    client_id, secret = _register(app, relying_party)
    verifier = "v" * 50
    authorize = _authorize_url(client_id, relying_party, verifier)

    page.goto(authorize("first"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    fill_sign_in(page, "jane@acme.test", STRONG_PASSWORD)
    expect(page.get_by_role("heading", name="Allow Team Wiki?")).to_be_visible()
    expect(page.get_by_text("Your email address")).to_be_visible()
    expect(page.get_by_text("Your organisation and your permissions in it")).to_be_visible()
    shot(page, "oidc-consent")
    page.get_by_role("button", name="Allow").click()
    expect(page.get_by_role("heading", name="Back at the wiki")).to_be_visible()
    answer = parse_qs(urlsplit(page.url).query)
    assert answer["state"] == ["first"] and answer["iss"] == [base_url]
    tokens = httpx.post(
        f"{base_url}/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": answer["code"][0],
            "redirect_uri": relying_party,
            "code_verifier": verifier,
        },
        auth=(client_id, secret),
    ).json()
    assert "id_token" in tokens and "refresh_token" in tokens

    # Consent is remembered: the next sign-in goes straight back.
    page.goto(authorize("second"))
    expect(page.get_by_role("heading", name="Back at the wiki")).to_be_visible()

    # The Apps page lists it; removing access ends the application's tokens.
    page.goto("/account/apps")
    expect(page.get_by_role("cell", name="Team Wiki")).to_be_visible()
    shot(page, "account-apps")
    page.get_by_role("button", name="Remove access").click()
    expect(page.get_by_text("No application has asked for your consent yet.")).to_be_visible()
    refused = httpx.post(
        f"{base_url}/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(client_id, secret),
    )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    userinfo = httpx.get(
        f"{base_url}/oauth2/userinfo",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert userinfo.status_code == 401

    # Asked again, and this time the person says no.
    page.goto(authorize("third"))
    expect(page.get_by_role("heading", name="Allow Team Wiki?")).to_be_visible()
    page.get_by_role("button", name="Deny").click()
    expect(page.get_by_role("heading", name="Back at the wiki")).to_be_visible()
    answer = parse_qs(urlsplit(page.url).query)
    assert answer["error"] == ["access_denied"] and answer["state"] == ["third"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_bad_redirect_uri_gets_an_error_page_not_a_redirect(  # type: ignore[no-untyped-def]
    app, relying_party: str, page: Page
) -> None:
    client_id, _ = _register(app, relying_party)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": "https://evil.example/steal",
            "scope": "openid",
        }
    )
    response = page.goto(f"/oauth2/authorize?{query}")
    assert response is not None and response.status == 400
    expect(page.get_by_role("heading", name="This sign-in request cannot be used")).to_be_visible()
    assert urlsplit(page.url).hostname == "127.0.0.1"
    shot(page, "oidc-error")
