"""The same-origin check for ``next``."""

from __future__ import annotations

import pytest

from idp.common.redirects import safe_next

ORIGIN = "https://id.acme.test"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.test/",
        "//evil.test",
        "///evil.test",
        "/\\evil.test",
        "\\\\evil.test",
        "https:evil.test",
        "javascript:alert(1)",
        "data:text/html,hi",
        "http://id.acme.test/",  # same host, wrong scheme
        "https://id.acme.test.evil.test/",
        "https://id.acme.test@evil.test/",
        "/ok\r\nSet-Cookie: x=1",
        "relative/path",
        "",
        None,
        "/" + "a" * 5000,
    ],
)
def test_refused(target: str | None) -> None:
    assert safe_next(target, ORIGIN) == "/account"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/account/sessions", "/account/sessions"),
        ("/authorize?client_id=x&state=y", "/authorize?client_id=x&state=y"),
        ("https://id.acme.test/account", "/account"),
    ],
)
def test_accepted(target: str, expected: str) -> None:
    assert safe_next(target, ORIGIN) == expected


ALLOWED = ["https://app.acme.test", "http://localhost:8080"]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("https://app.acme.test/inbox?x=1", "https://app.acme.test/inbox?x=1"),
        ("https://APP.acme.test", "https://app.acme.test/"),
        ("http://localhost:8080/", "http://localhost:8080/"),
        ("https://app.acme.test:8443/", "/account"),  # another port is another origin
        ("http://app.acme.test/", "/account"),  # and another scheme
        ("https://app.acme.test@evil.test/", "/account"),
        ("https://evil.test@app.acme.test/", "/account"),  # userinfo is never legitimate here
        ("https://app.acme.test.evil.test/", "/account"),
        ("https://[broken/", "/account"),
    ],
)
def test_allowed_origins(target: str, expected: str) -> None:
    assert safe_next(target, ORIGIN, also=ALLOWED) == expected
