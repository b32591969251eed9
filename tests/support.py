"""Helpers for tests: the server's app slot, CSRF-aware form posting, user factories."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import httpx
from flask import Flask

from idp.extensions import db
from idp.models import User
from idp.services import orgs, users

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
