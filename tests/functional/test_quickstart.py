"""The README's quick start, for real: the ``bascule`` script, its servers, a person's first visit.

Each test runs the installed console script in a new empty working directory with no
``BASCULE_*`` settings but the issuer, on free loopback ports, and stops it the way a person
does (Ctrl-C, or SIGTERM from a service manager). The whole process group is killed in
teardown whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from shutil import which

import httpx
import pytest

from tests.support import OTHER_STRONG_PASSWORD, csrf_token, post_form, sign_in

pytestmark = pytest.mark.slow

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
COMMAND_TIMEOUT = 120.0


def _bascule_script() -> str | None:
    """The console script of the Python running the tests (else whichever is on PATH)."""
    beside = Path(sys.executable).with_name("bascule")
    return str(beside) if beside.is_file() else which("bascule")


BASCULE = _bascule_script()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


@dataclass
class Instance:
    """An empty working directory where a person runs ``bascule``, and the settings they use."""

    cwd: Path
    idp_port: int = field(default_factory=_free_port)
    gateway_port: int = field(default_factory=_free_port)
    upstream_port: int = field(default_factory=_free_port)

    @property
    def issuer(self) -> str:
        # localhost, as in the README: it keeps development mode (plain http) on.
        return f"http://localhost:{self.idp_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://localhost:{self.gateway_port}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BASCULE_")}
        env["BASCULE_ISSUER"] = self.issuer
        env["BASCULE_GATEWAY_URL"] = self.gateway_url
        return env

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert BASCULE
        return subprocess.run(
            [BASCULE, *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )

    def count(self, query: str) -> int:
        database = self.cwd / "instance" / "bascule.db"
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
        try:
            return int(conn.execute(query).fetchone()[0])
        finally:
            conn.close()


@dataclass
class Server:
    """A running ``bascule serve`` and where its output goes."""

    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stdout.read_text(errors="replace")

    def errors(self) -> str:
        return self.stderr.read_text(errors="replace")

    def group_alive(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True


@pytest.fixture
def instance(tmp_path: Path) -> Instance:
    if BASCULE is None:
        pytest.skip("the `bascule` console script is not installed (pip install -e .)")
    cwd = tmp_path / "work"
    cwd.mkdir()
    return Instance(cwd)


@pytest.fixture
def serve(instance: Instance) -> Iterator[Server]:
    """``bascule serve`` on the instance's ports; ready once both servers answer."""
    stdout, stderr = instance.cwd.parent / "serve.out", instance.cwd.parent / "serve.err"
    assert BASCULE
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [
                BASCULE,
                "serve",
                "--idp-bind",
                f"127.0.0.1:{instance.idp_port}",
                "--gateway-bind",
                f"127.0.0.1:{instance.gateway_port}",
                "--upstream-bind",
                f"127.0.0.1:{instance.upstream_port}",
            ],
            cwd=instance.cwd,
            env=instance.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group, so teardown can end all of it
        )
    server = Server(process, stdout, stderr)
    try:
        _wait_until_ready(server, instance)
        yield server
    finally:
        if server.group_alive():
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT)


def _wait_until_ready(server: Server, instance: Instance) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    urls = [
        f"http://127.0.0.1:{instance.idp_port}/healthz",
        f"http://127.0.0.1:{instance.gateway_port}/_bascule/healthz",
        f"http://127.0.0.1:{instance.upstream_port}/healthz",
    ]
    with httpx.Client(timeout=2) as client:
        while urls:
            if server.process.poll() is not None:
                pytest.fail(
                    f"bascule serve exited with {server.process.returncode}:\n"
                    f"{server.output()}\n{server.errors()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"bascule serve did not answer in time:\n{server.errors()}")
            try:
                if client.get(urls[0]).status_code == 200:
                    urls.pop(0)
                    continue
            except httpx.TransportError:
                pass
            with suppress(subprocess.TimeoutExpired):  # paces the polling; sees an early exit
                server.process.wait(timeout=0.2)
    # The sign-in hint is printed after both servers were started, before they answer.
    assert "(Ctrl-C stops everything)" in server.output(), server.output()


def _stop(server: Server, instance: Instance, how: str) -> None:
    """Stop ``serve`` like a person (Ctrl-C: SIGINT to the group) or a service manager (SIGTERM
    to the main process), then check that it exited cleanly and left nothing running."""
    if how == "ctrl-c":
        os.killpg(server.process.pid, signal.SIGINT)
    else:
        server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=STOP_TIMEOUT) == 0, server.errors()
    deadline = time.monotonic() + STOP_TIMEOUT
    while server.group_alive():
        assert time.monotonic() < deadline, "a server process outlived bascule serve"
        time.sleep(0.1)
    assert _refuses_connections(instance.idp_port)
    assert _refuses_connections(instance.gateway_port)
    assert _refuses_connections(instance.upstream_port)
    errors = server.errors()
    assert "Traceback" not in errors, errors


def _printed_owner(output: str) -> tuple[str, str, str]:
    """(organisation, email, password) from the owner lines that init and serve print."""
    owner = re.search(r"^Owner of '([a-z0-9-]+)': (\S+@\S+)$", output, re.MULTILINE)
    password = re.search(r"^Password \(shown once, [^)]*\): (\S+)$", output, re.MULTILINE)
    assert owner and password, output
    return owner.group(1), owner.group(2), password.group(1)


def _browser(instance: Instance) -> httpx.Client:
    return httpx.Client(base_url=instance.issuer, timeout=30, headers={"Accept": "text/html"})


def test_serve_on_an_empty_folder_is_the_whole_quick_start(
    instance: Instance, serve: Server
) -> None:
    output = serve.output()
    assert "New instance: created the demo organisation and its owner." in output
    org, email, password = _printed_owner(output)
    assert (org, email) == ("demo", "admin@demo.test")
    assert len(password) >= 16
    assert f"Sign in at {instance.issuer}/login" in output
    assert f"IdP      http://127.0.0.1:{instance.idp_port}" in output
    assert f"gateway  http://127.0.0.1:{instance.gateway_port}" in output
    # It set itself up where the person ran it: a data key and the embedded database.
    assert list((instance.cwd / "keys" / "data").glob("*.key"))
    assert (instance.cwd / "instance" / "bascule.db").is_file()

    with _browser(instance) as browser:
        login = browser.get("/login")
        assert login.status_code == 200 and 'name="csrf_token"' in login.text
        signed_in = browser.post(
            "/login",
            data={"csrf_token": csrf_token(login.text), "email": email, "password": password},
        )
        assert signed_in.status_code == 303
        assert signed_in.headers["location"] == "/account"
        account = browser.get("/account")
        assert account.status_code == 200
        assert email in account.text and "(demo)" in account.text
        assert "role <strong>owner</strong>" in account.text

        # The demo app behind the gateway: signed in at the IdP, straight through.
        inbox = browser.get(f"{instance.gateway_url}/inbox", follow_redirects=True)
        assert inbox.status_code == 200 and str(inbox.url) == f"{instance.gateway_url}/inbox"
        assert "<h1>Inbox</h1>" in inbox.text and email in inbox.text

        sessions = browser.get("/account/sessions")
        assert sessions.status_code == 200
        assert sessions.text.count('<tr class="current">') == 1
        assert "this browser" in sessions.text
        assert "python-httpx" in sessions.text and "127.0.0.1" in sessions.text

        changed = post_form(
            browser,
            "/account/password",
            {
                "current_password": password,
                "new_password": OTHER_STRONG_PASSWORD,
                "new_password_confirm": OTHER_STRONG_PASSWORD,
            },
            page=account.text,
        )
        assert changed.status_code == 302
        assert changed.headers["location"] == "/account?changed=1"
        account = browser.get("/account?changed=1")
        assert "Your password was changed." in account.text

        signed_out = post_form(browser, "/logout", {}, page=account.text)
        assert signed_out.status_code == 302
        assert signed_out.headers["location"] == "/login"
        assert browser.get("/account").status_code == 302

        assert sign_in(browser, email, password).status_code == 401
        assert sign_in(browser, email, OTHER_STRONG_PASSWORD).status_code == 303
        assert browser.get("/account").status_code == 200

    _stop(serve, instance, "sigterm")


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_init_chooses_the_first_owner_and_is_idempotent(instance: Instance, as_json: bool) -> None:
    args = ["init", "--admin-email", "admin@acme.test", "--org", "acme"]
    first = instance.run(*args, *(["--json"] if as_json else []))
    assert first.returncode == 0, first.stderr
    if as_json:
        data = json.loads(first.stdout)
        assert data["data_key_created"] is True
        owner = data["owner"]
        assert owner["email"] == "admin@acme.test" and owner["org"] == "acme"
        assert owner["login_url"] == f"{instance.issuer}/login"
        password = owner["password"]
    else:
        assert "Created a data key." in first.stdout
        org, email, password = _printed_owner(first.stdout)
        assert (org, email) == ("acme", "admin@acme.test")
        assert f"Sign in at {instance.issuer}/login" in first.stdout
    assert len(password) >= 16

    # Again, in the other format: nothing new, no new password, no second owner.
    again = instance.run(*args, *([] if as_json else ["--json"]))
    assert again.returncode == 0, again.stderr
    if as_json:
        assert "admin@acme.test already exists and is an owner of 'acme'." in again.stdout
        assert "Password" not in again.stdout and "Created a data key" not in again.stdout
    else:
        data = json.loads(again.stdout)
        assert data["data_key_created"] is False
        assert data["owner"]["password"] is None
    assert instance.run("init").returncode == 0
    assert len(list((instance.cwd / "keys" / "data").glob("*.key"))) == 1
    assert instance.count("SELECT count(*) FROM users") == 1
    owners = (
        "SELECT count(*) FROM memberships m JOIN roles r ON r.id = m.role_id "
        "JOIN organisations o ON o.id = m.org_id WHERE o.slug = 'acme' AND r.name = 'owner'"
    )
    assert instance.count(owners) == 1


def test_serve_after_init_signs_in_the_chosen_owner(
    instance: Instance, request: pytest.FixtureRequest
) -> None:
    init = instance.run("init", "--admin-email", "admin@acme.test", "--org", "acme")
    assert init.returncode == 0, init.stderr
    _, _, password = _printed_owner(init.stdout)

    server = request.getfixturevalue("serve")
    output = server.output()
    assert "New instance" not in output and "Password" not in output
    assert f"Sign in at {instance.issuer}/login" in output
    with _browser(instance) as browser:
        assert sign_in(browser, "admin@acme.test", password).status_code == 303
        account = browser.get("/account")
        assert "admin@acme.test" in account.text and "(acme)" in account.text
    _stop(server, instance, "ctrl-c")
    # No demo organisation or owner was added to an instance that had one.
    assert instance.count("SELECT count(*) FROM organisations") == 1
    assert instance.count("SELECT count(*) FROM users") == 1
