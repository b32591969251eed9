"""nginx (Debian's package) in front of the messaging app, asking Bascule through auth_request.

A private nginx instance runs unprivileged from its own prefix in tmp_path, on a free loopback
port, with the two configuration files of ``tests/gateway/nginx/`` that docs/gateway.md shows
as they are. The gateway's public URL is nginx's, so sign-in goes out and comes back through
nginx. Nothing is installed here: without ``/usr/sbin/nginx`` the tests skip (``.ci/run``
installs it).
"""

from __future__ import annotations

import os
import pwd
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

NGINX = Path("/usr/sbin/nginx")
CONF_DIR = Path(__file__).resolve().parent / "nginx"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "gateway.md"

pytestmark = pytest.mark.skipif(
    not NGINX.exists(), reason=f"{NGINX} not found (Debian package nginx; .ci/run installs it)"
)


def nginx_conf(prefix: Path, listen: int, gateway_port: int, app_port: int) -> str:
    """The whole nginx.conf: a private instance around the two shared files."""
    # As root, nginx would switch its workers to a user that cannot enter tmp_path.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/temp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}worker_processes 1;
error_log {prefix}/error.log info;
events {{
    worker_connections 256;
}}
http {{
    access_log {prefix}/access.log;
{temp}
    include {CONF_DIR}/bascule-http.conf;
    upstream bascule_gateway {{
        server 127.0.0.1:{gateway_port};
        keepalive 8;
    }}
    upstream bascule_app {{
        server 127.0.0.1:{app_port};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{listen};
        server_name localhost;
        include {CONF_DIR}/bascule-locations.conf;
    }}
}}
"""


def run_nginx(prefix: Path, conf: str) -> subprocess.Popen[bytes]:
    """Start nginx in the foreground from ``prefix``; raises with its error log if it fails."""
    (prefix / "temp").mkdir(parents=True, exist_ok=True)
    (prefix / "nginx.conf").write_text(conf)
    error_log = prefix / "error.log"
    command = [
        str(NGINX), "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(error_log),
        "-g", f"daemon off; pid {prefix / 'nginx.pid'};",
    ]  # fmt: skip
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    with (prefix / "stderr.log").open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=out)
    return process


@pytest.fixture
def nginx(fronted_stack: FrontedStack, tmp_path: Path) -> Iterator[FrontedStack]:
    """nginx on the stack's front port, asking the gateway about every request."""
    prefix = tmp_path / "nginx"
    conf = nginx_conf(
        prefix, fronted_stack.front_port, fronted_stack.gateway_port, fronted_stack.upstream_port
    )
    process = run_nginx(prefix, conf)
    try:
        wait_listening(process, fronted_stack.front_port, prefix / "error.log")
        yield fronted_stack
    finally:
        stop(process)
    errors = [
        line
        for line in (prefix / "error.log").read_text().splitlines()
        if "[error]" in line or "[crit]" in line or "[emerg]" in line or "[alert]" in line
    ]
    assert not errors, "\n".join(errors)


def test_auth_request_end_to_end(nginx: FrontedStack) -> None:
    stack, app = nginx.stack, nginx.upstream
    front = stack.gateway_url
    user = make_user(stack.idp, "mia@demo.test", org_slug="demo", role="member")

    # Anonymous: a person's page view is sent to sign in; a program gets a 401.
    wanted = "/inbox?before=1000000&ref=a%20b"
    anonymous = httpx.get(front + wanted, headers={**HTML, **SPOOFED})
    assert anonymous.status_code == 302
    assert anonymous.headers["location"].startswith(front + "/_bascule/login?rd=")
    api = httpx.get(front + "/inbox", headers={**SPOOFED, "Accept": "application/json"})
    assert api.status_code == 401
    assert api.headers["content-type"] == "application/problem+json"
    assert api.json()["status"] == 401
    assert not any(path.startswith("/inbox") for path, _ in app.requests), app.requests

    with httpx.Client(timeout=30) as client:
        # Sign in through nginx and come back to the very URL asked for, query string and all.
        inbox = sign_in_through_gateway(client, stack, "mia@demo.test", STRONG_PASSWORD, wanted)
        assert inbox.status_code == 200, inbox.text[:500]
        assert str(inbox.url) == front + wanted
        assert "mia@demo.test" in inbox.text  # from the assertion: the app reads nothing else

        sent = client.post(
            front + "/messages",
            data={"body": "hello through nginx", "csrf_token": csrf_token(inbox.text)},
            headers=HTML,
        )
        assert sent.status_code in (302, 303), sent.text[:500]
        assert "hello through nginx" in follow(client, sent).text

        # The member's role has no billing.manage: nginx refuses, the app never sees it.
        billing = client.get(front + "/billing", headers=HTML)
        assert billing.status_code == 403
        assert not any(path.startswith("/billing") for path, _ in app.requests)

        # The client cannot name another request for the gateway to judge.
        for name in ("X-Original-URI", "X-Forwarded-Uri"):
            method = name.replace("URI", "Method").replace("Uri", "Method")
            smuggled = {name: "/inbox", method: "GET"}
            assert client.get(front + "/billing", headers={**HTML, **smuggled}).status_code == 403
        assert not any(path.startswith("/billing") for path, _ in app.requests)

        # Identity headers sent by the client are replaced by the gateway's.
        app.requests.clear()
        spoofed = client.get(front + "/inbox", headers={**HTML, **SPOOFED})
        assert spoofed.status_code == 200
        assert "mia@demo.test" in spoofed.text and "mallory" not in spoofed.text
        [(path, seen)] = app.requests
        assert path == "/inbox"
        assert seen["x-bascule-user"] == user.id
        assert seen["x-bascule-email"] == "mia@demo.test"
        assert seen["x-bascule-org"] == "demo"
        assert seen["x-bascule-permissions"] == "messages.edit messages.send"
        assert seen["x-bascule-assertion"] != SPOOFED["X-Bascule-Assertion"]
        assert "bascule_gateway" not in seen.get("cookie", "")  # the session stays at nginx
        assert seen["x-forwarded-for"] == "127.0.0.1"

        # What the app received verifies as the app verifies it: the IdP's JWKS, iss, aud.
        verifier = AssertionVerifier(KeyCache(jwks_url(stack.idp_url)), front, "messaging")
        caller = verifier.verify(seen["x-bascule-assertion"])
        assert (caller.sub, caller.email, caller.org) == (user.id, "mia@demo.test", "demo")
        assert caller.permissions == {"messages.edit", "messages.send"}

        # The decision endpoint and the metrics are not for the public.
        assert client.get(front + "/_bascule/auth").status_code == 404
        assert client.get(front + "/_bascule/metrics").status_code == 404

        # Sign out through nginx: the next page view goes back to sign in.
        out = client.get(front + "/_bascule/logout", headers=HTML)
        assert out.status_code == 302
        again = client.get(front + "/inbox", headers=HTML)
        assert again.status_code == 302
        assert again.headers["location"].startswith(front + "/_bascule/login?rd=")


def test_public_route_carries_no_identity(nginx: FrontedStack) -> None:
    """A route the policy makes public passes without a session, and spoofed identity
    headers still do not reach the app (nginx sends no header for an empty value)."""
    stack, app = nginx.stack, nginx.upstream
    answer = httpx.get(stack.gateway_url + "/healthz", headers=SPOOFED)
    assert answer.status_code == 200
    [(path, seen)] = app.requests
    assert path == "/healthz"
    assert not [name for name in seen if name.startswith("x-bascule-")], seen


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_app_never_sees_the_gateway_cookie(nginx: FrontedStack) -> None:
    """nginx drops the gateway's session cookie (either name) and keeps every other one."""
    stack, app = nginx.stack, nginx.upstream
    sent_and_seen = [
        ("a=1; bascule_gateway=X; b=2", "a=1; b=2"),
        ("bascule_gateway=X; b=2", "b=2"),
        ("a=1;__Host-bascule_gateway=X", "a=1"),
        ("__Host-bascule_gateway=X", None),
        (
            "bascule_gateway_state=s; xbascule_gateway=1",
            "bascule_gateway_state=s; xbascule_gateway=1",
        ),
    ]
    for sent, _ in sent_and_seen:
        assert httpx.get(stack.gateway_url + "/healthz", headers={"Cookie": sent}).is_success
    assert [seen.get("cookie") for _, seen in app.requests] == [want for _, want in sent_and_seen]


def test_app_refuses_identity_headers_without_the_assertion(nginx: FrontedStack) -> None:
    """Reached around nginx, the app trusts no plain header: only a verified assertion."""
    direct = f"http://127.0.0.1:{nginx.upstream_port}/inbox"
    answer = httpx.get(direct, headers={**HTML, **SPOOFED})
    assert answer.status_code == 401
    assert "mallory" not in answer.text


def test_docs_show_the_tested_configuration() -> None:
    """docs/gateway.md shows both files exactly as this test runs them."""
    docs = DOCS.read_text()
    for name in ("bascule-http.conf", "bascule-locations.conf"):
        assert (CONF_DIR / name).read_text() in docs, f"docs/gateway.md differs from {name}"
