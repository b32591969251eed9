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
