"""Signing in through the gateway with a plain HTTP client, as a browser would."""

from __future__ import annotations

import re

import httpx

from tests.gateway.conftest import Stack
from tests.support import STRONG_PASSWORD, csrf_token, make_user

HTML = {"Accept": "text/html"}


def follow(client: httpx.Client, response: httpx.Response, limit: int = 10) -> httpx.Response:
    """Follow redirects across the IdP and the gateway (httpx keeps one cookie jar)."""
    for _ in range(limit):
        if response.status_code not in (301, 302, 303, 307, 308):
            return response
        target = response.url.join(response.headers["location"])
        response = client.get(target, headers=HTML)
    raise AssertionError("too many redirects")


def sign_in_through_gateway(
    client: httpx.Client, stack: Stack, email: str, password: str, path: str = "/inbox"
) -> httpx.Response:
    """Open ``path`` at the gateway, sign in at the IdP, come back; the page it lands on."""
    login_page = follow(client, client.get(stack.gateway_url + path, headers=HTML))
    assert "/login" in str(login_page.url), login_page.url
    form = {
        "email": email,
        "password": password,
        "csrf_token": csrf_token(login_page.text),
        "next": hidden(login_page.text, "next"),
    }
    return follow(client, client.post(stack.idp_url + "/login", data=form, headers=HTML))


def hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no {name} field"
    return match.group(1).replace("&amp;", "&")


COOKIE = "bascule_gateway"  # the gateway's cookie in development mode (plain http)


def gateway_cookie(stack: Stack, email: str, role: str, path: str = "/inbox") -> str:
    """A new user of ``role`` in the demo organisation, signed in through the gateway:
    the value of their gateway cookie (``<token>.<idp sid>.<user id>``)."""
    make_user(stack.idp, email, org_slug="demo", role=role)
    with httpx.Client(timeout=30) as client:
        landed = sign_in_through_gateway(client, stack, email, STRONG_PASSWORD, path)
        assert landed.status_code == 200, landed.text[:300]
        value = client.cookies.get(COOKIE)
    assert value, "no gateway cookie after sign-in"
    return value
