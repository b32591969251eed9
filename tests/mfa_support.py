"""Helpers for the second-factor tests: enrol a factor through HTTP, JSON posts with CSRF."""

from __future__ import annotations

import html
import re
import subprocess
from typing import Any

import httpx

from tests.soft_authenticator import SoftAuthenticator
from tests.support import STRONG_PASSWORD, post_form, sign_in

_ANY_CSRF = re.compile(r'(?:name="csrf_token" value|data-csrf)="([^"]+)"')
_SECRET = re.compile(r'<code class="secret" id="totp-secret">([A-Z2-7 ]+)</code>')
_CODES = re.compile(r"<li><code>([a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4})</code></li>")
_OTPAUTH = re.compile(r'href="(otpauth://[^"]+)"')


def page_csrf(page: str) -> str:
    match = _ANY_CSRF.search(page)
    assert match, "page has no CSRF token"
    return match.group(1)


def oathtool(secret: str, now: float) -> str:
    """The code Debian's oathtool computes for ``secret`` at ``now`` (an independent TOTP)."""
    done = subprocess.run(
        ["oathtool", "--totp", "-b", secret, "--now", f"@{int(now)}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    return done.stdout.strip()


def json_post(client: httpx.Client, path: str, body: dict[str, Any], csrf: str) -> httpx.Response:
    return client.post(path, json=body, headers={"X-CSRFToken": csrf, "Accept": "application/json"})


def totp_page_secret(page: str) -> str:
    match = _SECRET.search(page)
    assert match, "the enrolment page shows no secret"
    return match.group(1).replace(" ", "")


def otpauth_uri(page: str) -> str:
    match = _OTPAUTH.search(page)
    assert match, "the enrolment page has no otpauth:// link"
    return html.unescape(match.group(1))


def recovery_codes(page: str) -> list[str]:
    return _CODES.findall(page)


def enrol_totp(client: httpx.Client, now: float) -> tuple[str, list[str]]:
    """Set up an authenticator app for the signed-in client; returns the seed and the codes."""
    page = client.get("/account/2fa/totp")
    assert page.status_code == 200, page.text
    secret = totp_page_secret(page.text)
    done = post_form(client, "/account/2fa/totp", {"code": oathtool(secret, now)}, page=page.text)
    assert done.status_code == 302, done.text
    assert done.headers["location"] == "/account/2fa/recovery-codes"
    codes = recovery_codes(client.get("/account/2fa/recovery-codes").text)
    return secret, codes


def register_key(
    client: httpx.Client, authenticator: SoftAuthenticator, name: str = "Blue key"
) -> httpx.Response:
    csrf = page_csrf(client.get("/account/2fa").text)
    options = json_post(client, "/account/2fa/webauthn/options", {}, csrf)
    assert options.status_code == 200, options.text
    credential = authenticator.create(options.json()["publicKey"])
    return json_post(
        client, "/account/2fa/webauthn/verify", {"credential": credential, "name": name}, csrf
    )


def password_step(client: httpx.Client, email: str, password: str = STRONG_PASSWORD) -> str:
    """Type the password; returns where the server sent the browser."""
    response = sign_in(client, email, password)
    assert response.status_code == 303, response.text
    return response.headers["location"]


def is_signed_in(client: httpx.Client) -> bool:
    return client.get("/account").status_code == 200


def sign_out(client: httpx.Client) -> None:
    page = client.get("/account").text
    post_form(client, "/logout", {}, page=page)
