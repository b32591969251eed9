"""Helpers for tests: the server's app slot, CSRF-aware form posting, user factories, browsers
that sign in over HTTP, and what the operator's commands do (contexts, invitations, API tokens)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import httpx
from flask import Flask

from idp.extensions import db
from idp.models import User
from idp.runtime import runtime
from idp.services import api_tokens, authz, credentials, orgs, sessions, users
from idp.services.audit import ANONYMOUS, CLI

STRONG_PASSWORD = "correct horse battery staple 42"
OTHER_STRONG_PASSWORD = "violet kettle drums under moonlight"

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class FlaskHolder:
    """A WSGI app that forwards to ``app`` once a test has built it."""

    app: Flask | None = None

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        assert self.app is not None, "no app plugged into the test server"
        return self.app(environ, start_response)


def csrf_token(page: str) -> str:
    match = _CSRF.search(page)
    assert match, "page has no CSRF token"
    return match.group(1)


def post_form(
    client: httpx.Client, path: str, data: dict[str, str], page: str = ""
) -> httpx.Response:
    """GET the form page (or use ``page``) for its CSRF token, then POST ``data`` with it."""
    html = page or client.get(path).text
    return client.post(path, data={"csrf_token": csrf_token(html), **data})


def sign_in(client: httpx.Client, email: str, password: str, next_url: str = "") -> httpx.Response:
    page = client.get("/login").text
    data = {"email": email, "password": password}
    if next_url:
        data["next"] = next_url
    return client.post("/login", data={"csrf_token": csrf_token(page), **data})


def make_user(
    app: Flask,
    email: str = "jane@acme.test",
    password: str | None = STRONG_PASSWORD,
    org_slug: str = "acme",
    role: str = "member",
    name: str = "Jane Doe",
) -> User:
    """A user in ``org_slug`` (created if needed) with a clear password, committed."""
    org = orgs.find(org_slug) or orgs.create(org_slug, org_slug.title())
    user = users.create_user(email, name)
    orgs.add_member(user, org, orgs.get_role(org, role))
    if password is not None:
        users.set_password(user, password, rounds=app.extensions["bascule"].settings.bcrypt_rounds)
    db.session.commit()
    return user


def session_cookie(client: httpx.Client) -> str | None:
    return client.cookies.get("bascule_session")


def sid_of(client: httpx.Client) -> str:
    """The public id of the IdP session this client holds (the OIDC ``sid``)."""
    cookie = session_cookie(client)
    assert cookie
    return sessions.session_id(cookie)


class Browsers:
    """Cookie-keeping clients that do not follow redirects, all closed after the test."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.opened: list[httpx.Client] = []

    def new(self) -> httpx.Client:
        browser = httpx.Client(base_url=self.base_url, timeout=30, headers={"Accept": "text/html"})
        self.opened.append(browser)
        return browser

    def signed_in(
        self, address: str = "jane@acme.test", password: str = STRONG_PASSWORD
    ) -> httpx.Client:
        browser = self.new()
        assert sign_in(browser, address, password).status_code == 303
        return browser

    def sign_in_status(self, address: str, password: str) -> int:
        return sign_in(self.new(), address, password).status_code


def cli_context() -> credentials.Context:
    """The context an operator's ``bascule`` command runs with, in the current app."""
    rt = runtime()
    return credentials.Context(rt.settings, rt.store, rt.mailer, CLI, rt.clock())


def invite(app: Flask, address: str) -> str:
    """What ``bascule users create EMAIL --org acme`` does without a password."""
    user = make_user(app, email=address, password=None, name="Ivy Newcomer")
    link = credentials.invite(cli_context(), user, orgs.get("acme"), invited_by=ANONYMOUS)
    db.session.commit()
    return link


def token_for(app: Flask, user: User, org_slug: str = "acme", name: str = "test") -> str:
    """A personal API token made by the operator, as ``bascule tokens create`` does."""
    org = orgs.get(org_slug)
    issued = api_tokens.create(authz.operator(org), cli_context(), user, name)
    db.session.commit()
    return issued.secret


class Api:
    """An HTTP client for /api/v1 that sends one bearer token (or none)."""

    def __init__(self, base_url: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=f"{base_url}/api/v1", headers=headers, timeout=30)

    def __getattr__(self, method: str) -> Any:
        return getattr(self.client, method)
