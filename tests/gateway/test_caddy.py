"""Caddy 2 (Debian's package) in front of the messaging app, asking Bascule through forward_auth.

The Caddyfile is the one docs/gateway.md shows, taken from the page and given loopback
addresses: the site name becomes a plain-http loopback address and the gateway's and the app's
addresses become this test's. Without ``caddy`` on the PATH the tests skip (``.ci/run``
installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from examples.messaging.assertion import AssertionVerifier, KeyCache, jwks_url
from tests.gateway.conftest import FrontedStack
from tests.gateway.front_proxies import SPOOFED, stop, wait_listening
from tests.gateway.support import HTML, follow, sign_in_through_gateway
from tests.support import STRONG_PASSWORD, csrf_token, make_user

CADDY = shutil.which("caddy")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "gateway.md"
GLOBAL_OPTIONS = "{\n\tadmin off\n\tauto_https off\n}\n"

pytestmark = pytest.mark.skipif(
    CADDY is None, reason="caddy not found (Debian package caddy; .ci/run installs it)"
)


def documented_caddyfile() -> str:
    blocks = re.findall(r"```caddyfile\n(.*?)```", DOCS.read_text(), re.DOTALL)
    assert len(blocks) == 1, "docs/gateway.md should show one Caddyfile"
    return str(blocks[0])


def caddyfile(front: int, gateway: int, app: int) -> str:
    site = documented_caddyfile()
    for documented, here in (
        ("app.example.com {", f"http://127.0.0.1:{front} {{"),
        ("127.0.0.1:8080", f"127.0.0.1:{gateway}"),
        ("127.0.0.1:8090", f"127.0.0.1:{app}"),
    ):
        assert documented in site, documented
        site = site.replace(documented, here)
    return GLOBAL_OPTIONS + site


@pytest.fixture
def caddy(fronted_stack: FrontedStack, tmp_path: Path) -> Iterator[FrontedStack]:
    assert CADDY is not None
    home = tmp_path / "caddy"
    home.mkdir()
    config = home / "Caddyfile"
    config.write_text(
        caddyfile(fronted_stack.front_port, fronted_stack.gateway_port, fronted_stack.upstream_port)
    )
    # Caddy keeps its state under $HOME / XDG folders: a private one, not the user's.
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home),
        "XDG_CONFIG_HOME": str(home),
    }
    log = home / "caddy.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [CADDY, "run", "--config", str(config), "--adapter", "caddyfile"],
            env=env, stdout=out, stderr=out,
        )  # fmt: skip
    try:
        wait_listening(process, fronted_stack.front_port, log)
        yield fronted_stack
    finally:
        stop(process)


def test_forward_auth_end_to_end(caddy: FrontedStack) -> None:
    stack, app = caddy.stack, caddy.upstream
    front = stack.gateway_url
    user = make_user(stack.idp, "mia@demo.test", org_slug="demo", role="member")

    wanted = "/inbox?before=1000000&ref=x"
    anonymous = httpx.get(front + wanted, headers={**HTML, **SPOOFED})
    assert anonymous.status_code == 302
    assert anonymous.headers["location"].startswith(front + "/_bascule/login?rd=")
    api = httpx.get(front + "/inbox", headers=SPOOFED)
    assert api.status_code == 401
    assert api.headers["content-type"] == "application/problem+json"
    assert not app.requests

    with httpx.Client(timeout=30) as client:
        inbox = sign_in_through_gateway(client, stack, "mia@demo.test", STRONG_PASSWORD, wanted)
        assert inbox.status_code == 200 and str(inbox.url) == front + wanted
        assert "mia@demo.test" in inbox.text
        sent = client.post(
            front + "/messages",
            data={"body": "hello through caddy", "csrf_token": csrf_token(inbox.text)},
            headers=HTML,
        )
        assert sent.status_code in (302, 303), sent.text[:500]
        assert "hello through caddy" in follow(client, sent).text

        assert client.get(front + "/billing", headers=HTML).status_code == 403
        for name in ("X-Original-URI", "X-Forwarded-Uri"):
            method = name.replace("URI", "Method").replace("Uri", "Method")
            smuggled = {name: "/inbox", method: "GET"}
            assert client.get(front + "/billing", headers={**HTML, **smuggled}).status_code == 403
        assert not any(path.startswith("/billing") for path, _ in app.requests)

        app.requests.clear()
        assert client.get(front + "/inbox", headers={**HTML, **SPOOFED}).status_code == 200
        [(_, seen)] = app.requests
        assert seen["x-bascule-user"] == user.id
        assert seen["x-bascule-email"] == "mia@demo.test"
        assert seen["x-bascule-permissions"] == "messages.edit messages.send"
        verifier = AssertionVerifier(KeyCache(jwks_url(stack.idp_url)), front, "messaging")
        assert verifier.verify(seen["x-bascule-assertion"]).sub == user.id

        assert client.get(front + "/_bascule/auth").status_code == 404
        assert client.get(front + "/_bascule/metrics").status_code == 404

    app.requests.clear()
    assert httpx.get(front + "/healthz", headers=SPOOFED).status_code == 200
    [(_, seen)] = app.requests
    assert not [value for name, value in seen.items() if name.startswith("x-bascule-") and value]
