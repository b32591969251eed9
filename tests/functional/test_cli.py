"""The ``bascule`` command line: every admin command, for people and for scripts (``--json``).

Commands run in-process through click's runner against a real instance that ``bascule init``
created in a temporary folder (SQLite, SQL-backed store); what they change is checked through
other commands, through the web pages, and directly in the database.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy
from click.testing import CliRunner, Result

from idp import config
from idp.app import create_app
from idp.cli import main
from idp.extensions import db
from tests.support import FlaskHolder, sign_in

STRONG = "correct horse battery staple 42"
OTHER_STRONG = "violet kettle drums under moonlight"


@dataclass
class Cli:
    """Runs ``bascule`` commands against one instance."""

    instance: Path
    database_url: str

    def run(self, *args: str, stdin: str | None = None) -> Result:
        return CliRunner().invoke(main, list(args), input=stdin)

    def ok(self, *args: str, stdin: str | None = None) -> str:
        result = self.run(*args, stdin=stdin)
        assert result.exit_code == 0, (args, result.exit_code, result.stdout, result.stderr)
        assert result.exception is None, result.exception
        return result.stdout

    def json(self, *args: str, stdin: str | None = None) -> Any:
        return json.loads(self.ok(*args, "--json", stdin=stdin))

    def fails(self, *args: str, stdin: str | None = None) -> str:
        """Run a command that must be refused; return its one-line error message."""
        result = self.run(*args, stdin=stdin)
        assert result.exit_code != 0, (args, result.stdout)
        # A refusal ends the command on purpose (SystemExit); anything else is a crash.
        assert isinstance(result.exception, SystemExit), result.exc_info
        assert "Traceback" not in result.stderr + result.stdout
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("Error: "), lines
        assert result.stdout == "", "a refused command prints nothing for scripts to misread"
        return lines[0].removeprefix("Error: ")

    def sql(self, statement: str, **params: Any) -> list[Any]:
        """Run SQL on the instance's database directly, as an intruder or an auditor would.

        On PostgreSQL it acts as a superuser able to switch triggers off, so it gets past the
        append-only trigger on audit_events: what is left to catch it is the hash chain.
        """
        engine = sqlalchemy.create_engine(self.database_url)
        try:
            with engine.begin() as conn:
                if engine.dialect.name == "postgresql":
                    conn.execute(sqlalchemy.text("SET LOCAL session_replication_role = replica"))
                result = conn.execute(sqlalchemy.text(statement), params)
                return list(result) if result.returns_rows else []
        finally:
            engine.dispose()


def _make_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str | None = None
) -> Cli:
    for name in list(os.environ):
        if name.startswith("BASCULE_"):
            monkeypatch.delenv(name)
    instance = tmp_path / "instance"
    monkeypatch.setenv("BASCULE_INSTANCE_DIR", str(instance))
    monkeypatch.setenv("BASCULE_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("BASCULE_BCRYPT_ROUNDS", "4")
    if database_url:
        monkeypatch.setenv("BASCULE_DATABASE_URL", database_url)
    cli = Cli(instance, database_url or f"sqlite:///{instance / 'bascule.db'}")
    out = cli.ok("init")
    assert "Schema is up to date." in out
    return cli


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """A new instance on the embedded default (SQLite), initialised by ``bascule init``."""
    return _make_cli(tmp_path, monkeypatch)


@pytest.fixture
def any_cli(
    backend: str, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Cli:
    """The same on each backend's own fresh database (SQLite, PostgreSQL)."""
    return _make_cli(tmp_path, monkeypatch, database_url)


@pytest.fixture
def acme(cli: Cli) -> Cli:
    """An instance with organisation ``acme`` and a member bob@acme.test with a password."""
    cli.ok("orgs", "create", "acme", "--name", "Acme Corp")
    cli.ok(
        "users", "create", "bob@acme.test", "--org", "acme", "--password-stdin", stdin=STRONG + "\n"
    )
    return cli


class Browsers:
    """Cookie-keeping HTTP clients, each signed in as someone: one per device."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.stack = ExitStack()

    def signed_in(self, email: str = "bob@acme.test", password: str = STRONG) -> httpx.Client:
        client = self.stack.enter_context(
            httpx.Client(base_url=self.base_url, timeout=30, headers={"Accept": "text/html"})
        )
        assert sign_in(client, email, password).status_code == 303
        assert client.get("/account").status_code == 200
        return client

    def sign_in_status(self, email: str, password: str) -> int:
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            return sign_in(client, email, password).status_code


@contextmanager
def _idp(server: tuple[str, FlaskHolder]) -> Iterator[Browsers]:
    """The IdP of the instance the environment names, over real HTTP: real sign-ins."""
    base_url, holder = server
    app = create_app(config.load(issuer=base_url))
    holder.app = app
    browsers = Browsers(base_url)
    try:
        with browsers.stack:
            yield browsers
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        app.extensions["bascule"].store.close()


@pytest.fixture
def web(acme: Cli, server: tuple[str, FlaskHolder]) -> Iterator[Browsers]:
    with _idp(server) as browsers:
        yield browsers


def _audit_events(cli: Cli, *args: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in cli.ok("audit", "export", *args).splitlines()]


# --- organisations ----------------------------------------------------------------------------


def test_orgs_create(cli: Cli) -> None:
    assert cli.ok("orgs", "create", "acme", "--name", "Acme Corp").strip() == "Created 'acme'."
    data = cli.json("orgs", "create", "globex", "--name", "Globex")
    assert data["slug"] == "globex" and data["name"] == "Globex" and data["id"]
    # The built-in roles came with it: a member can be given each of them.
    for role in ("owner", "admin", "member", "viewer"):
        cli.ok("users", "create", f"{role}@globex.test", "--org", "globex", "--role", role)
    events = [(e["event"], e["target"]) for e in _audit_events(cli)]
    assert ("org.create", "acme") in events and ("org.create", "globex") in events


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["orgs", "create", "Not A Slug"], "'Not A Slug' is not a valid slug"),
        (["orgs", "create", "acme-", "--json"], "'acme-' is not a valid slug"),
        (["orgs", "create", "acme"], "organisation 'acme' already exists"),
        (["orgs", "create", "acme", "--json"], "organisation 'acme' already exists"),
    ],
)
def test_orgs_create_refusals(acme: Cli, args: list[str], message: str) -> None:
    assert message in acme.fails(*args)


# --- users ------------------------------------------------------------------------------------


def test_users_create_with_password_from_stdin(cli: Cli, server: tuple[str, FlaskHolder]) -> None:
    cli.ok("orgs", "create", "acme")
    out = cli.ok(
        "users", "create", "Bob@Acme.test", "--org", "acme", "--password-stdin", stdin=STRONG
    )
    assert out.strip() == "Created bob@acme.test (member in 'acme')."
    data = cli.json(
        "users",
        "create",
        "carol@acme.test",
        "--org",
        "acme",
        "--role",
        "admin",
        "--password-stdin",
        stdin=OTHER_STRONG + "\n",
    )
    assert data["email"] == "carol@acme.test" and data["org"] == "acme"
    assert "invitation_link" not in data
    assert not (cli.instance / "outbox").exists(), "no invitation when a password was given"
    # Both can sign in with exactly the password they were given.
    with _idp(server) as web:
        web.signed_in("bob@acme.test", STRONG)
        carol = web.signed_in("carol@acme.test", OTHER_STRONG)
        assert "role <strong>admin</strong>" in carol.get("/account").text
        assert web.sign_in_status("carol@acme.test", OTHER_STRONG + "x") == 401


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "Use at least 12 characters (this one has 5)."),
        ("password1234", "common password"),
        ("bob-acme-test-2026", "mostly your name, email or organisation"),
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_users_create_refuses_a_weak_password(
    cli: Cli, password: str, reason: str, as_json: bool
) -> None:
    cli.ok("orgs", "create", "acme")
    args = ["users", "create", "bob@acme.test", "--org", "acme", "--password-stdin"]
    message = cli.fails(*args, *(["--json"] if as_json else []), stdin=password + "\n")
    assert message.startswith("password refused: ")
    assert reason in message
    # Nothing was left behind: no half-made account, so the same command can simply be retried.
    assert cli.sql("SELECT count(*) FROM users")[0][0] == 0
    assert cli.ok(*args, stdin=STRONG + "\n")


@pytest.mark.parametrize("as_json", [False, True])
def test_users_create_without_password_sends_an_invitation(cli: Cli, as_json: bool) -> None:
    cli.ok("orgs", "create", "acme", "--name", "Acme Corp")
    args = ["users", "create", "dana@acme.test", "--org", "acme", "--role", "viewer"]
    if as_json:
        data = cli.json(*args)
        link = data["invitation_link"]
        assert data["email"] == "dana@acme.test"
    else:
        lines = cli.ok(*args).splitlines()
        assert lines[0] == "Created dana@acme.test (viewer in 'acme')."
        assert lines[1].startswith("Invitation link: ")
        link = lines[1].removeprefix("Invitation link: ")
    assert link.startswith("http://localhost:8000/invite/")
    mails = list((cli.instance / "outbox").glob("*.eml"))
    assert len(mails) == 1
    mail = message_from_bytes(mails[0].read_bytes())
    assert mail["To"] == "dana@acme.test"
    assert mail["Subject"] == "You are invited to Acme Corp on Bascule"
    assert link in mail.get_payload(decode=True).decode()
    # The account has no password until the link is used.
    assert cli.sql("SELECT password_hash FROM users WHERE email = 'dana@acme.test'") == [(None,)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["users", "create", "eve@acme.test", "--org", "nope"], "no organisation 'nope'"),
        (["users", "create", "bob@acme.test", "--org", "acme"], "is already a member of 'acme'"),
        (
            ["users", "create", "BOB@acme.test ", "--org", "acme", "--json"],
            "is already a member of 'acme'",
        ),
        (["users", "create", "not-an-email", "--org", "acme"], "is not an email address"),
        (["users", "create", "eve@acme.test", "--org", "acme", "--role", "boss"], "no role 'boss'"),
        (["users", "set-role", "ghost@acme.test", "admin", "--org", "acme"], "no user with email"),
        (["users", "set-role", "bob@acme.test", "admin", "--org", "nope"], "no organisation"),
        (["users", "set-role", "bob@acme.test", "boss", "--org", "acme"], "no role 'boss'"),
        (["users", "disable", "ghost@acme.test"], "no user with email ghost@acme.test"),
        (["users", "enable", "ghost@acme.test", "--json"], "no user with email ghost@acme.test"),
        (["sessions", "revoke", "--user", "ghost@acme.test"], "no user with email"),
    ],
)
def test_user_command_refusals(acme: Cli, args: list[str], message: str) -> None:
    assert message in acme.fails(*args)


def test_users_set_role(acme: Cli) -> None:
    out = acme.ok("users", "set-role", "bob@acme.test", "admin", "--org", "acme")
    assert out.strip() == "bob@acme.test is now admin in 'acme' (was member)."
    data = acme.json("users", "set-role", "BOB@acme.test", "viewer", "--org", "acme")
    assert data == {
        "email": "bob@acme.test",
        "org": "acme",
        "role": "viewer",
        "previous_role": "admin",
    }
    changes = [e["details"] for e in _audit_events(acme) if e["event"] == "member.role_change"]
    assert changes == [
        {"before": "member", "after": "admin"},
        {"before": "admin", "after": "viewer"},
    ]


def test_users_set_role_for_a_non_member_and_the_last_owner(acme: Cli) -> None:
    acme.ok("orgs", "create", "globex")
    assert "is not a member of 'globex'" in acme.fails(
        "users", "set-role", "bob@acme.test", "admin", "--org", "globex"
    )
    acme.ok("users", "set-role", "bob@acme.test", "owner", "--org", "acme")
    assert "last owner" in acme.fails(
        "users", "set-role", "bob@acme.test", "member", "--org", "acme"
    )


def test_users_disable_ends_sessions_and_enable_restores_sign_in(acme: Cli, web: Browsers) -> None:
    first, second = web.signed_in(), web.signed_in()
    out = acme.ok("users", "disable", "bob@acme.test")
    assert out.strip() == "bob@acme.test disabled (2 session(s) ended)."
    for client in (first, second):
        response = client.get("/account")
        assert response.status_code == 302
        assert response.headers["location"].startswith("/login")
    assert web.sign_in_status("bob@acme.test", STRONG) == 401

    assert acme.json("users", "enable", "bob@acme.test") == {
        "email": "bob@acme.test",
        "active": True,
        "sessions_revoked": 0,
    }
    third = web.signed_in()
    assert acme.json("users", "disable", "bob@acme.test") == {
        "email": "bob@acme.test",
        "active": False,
        "sessions_revoked": 1,
    }
    assert third.get("/account").status_code == 302
    assert acme.ok("users", "enable", "bob@acme.test").strip() == "bob@acme.test enabled."
    web.signed_in()
    events = [e["event"] for e in _audit_events(acme) if e["target"] == "bob@acme.test"]
    assert events[-4:] == ["user.disable", "user.enable", "user.disable", "user.enable"]


def test_sessions_revoke(acme: Cli, web: Browsers) -> None:
    first, second = web.signed_in(), web.signed_in()
    assert acme.ok("sessions", "revoke", "--user", "bob@acme.test").strip() == (
        "Ended 2 session(s) of bob@acme.test."
    )
    assert first.get("/account").status_code == 302
    assert second.get("/account").status_code == 302
    third = web.signed_in()  # the account itself still works
    data = acme.json("sessions", "revoke", "--user", "bob@acme.test")
    assert data == {"email": "bob@acme.test", "sessions_revoked": 1}
    assert third.get("/account").status_code == 302
    assert acme.json("sessions", "revoke", "--user", "bob@acme.test")["sessions_revoked"] == 0


# --- roles ------------------------------------------------------------------------------------


def test_roles_create(acme: Cli) -> None:
    out = acme.ok("roles", "create", "auditor", "--org", "acme", "--permissions", "audit.read")
    assert out.strip() == "Created role 'auditor' in 'acme': audit.read."
    data = acme.json(
        "roles",
        "create",
        "support",
        "--org",
        "acme",
        "--permissions",
        " user_data.read, messages.send ",
    )
    assert data == {
        "org": "acme",
        "role": "support",
        "permissions": ["messages.send", "user_data.read"],
    }
    assert acme.json("roles", "create", "nobody", "--org", "acme")["permissions"] == []
    # The new role can be given to a member.
    acme.ok("users", "set-role", "bob@acme.test", "support", "--org", "acme")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["roles", "create", "ops", "--org", "acme", "--permissions", "audit.read,root.all"],
            "unknown permission(s): root.all; known: audit.read, billing.manage",
        ),
        (
            ["roles", "create", "ops", "--org", "acme", "--permissions", "root.all", "--json"],
            "unknown permission(s): root.all",
        ),
        (["roles", "create", "ops", "--org", "nope"], "no organisation 'nope'"),
        (["roles", "create", "Ops Team", "--org", "acme"], "is not a valid role name"),
        (["roles", "create", "admin", "--org", "acme"], "role 'admin' already exists in 'acme'"),
        (["roles", "grant", "ops", "audit.read", "--org", "acme"], "has no role 'ops'"),
        (["roles", "grant", "admin", "billing.manage", "--org", "acme"], "is a built-in role"),
        (["roles", "revoke", "member", "messages.send", "--org", "acme"], "is a built-in role"),
    ],
)
def test_role_command_refusals(acme: Cli, args: list[str], message: str) -> None:
    assert message in acme.fails(*args)


def test_roles_grant_and_revoke(acme: Cli) -> None:
    acme.ok("roles", "create", "auditor", "--org", "acme", "--permissions", "audit.read")
    out = acme.ok("roles", "grant", "auditor", "user_data.read", "--org", "acme")
    assert out.strip() == "Granted user_data.read to 'auditor'."
    assert acme.json("roles", "grant", "auditor", "user_data.read", "--org", "acme") == {
        "role": "auditor",
        "permissions": ["audit.read", "user_data.read"],
        "changed": False,
    }
    assert acme.json("roles", "revoke", "auditor", "audit.read", "--org", "acme") == {
        "role": "auditor",
        "permissions": ["user_data.read"],
        "changed": True,
    }
    out = acme.ok("roles", "revoke", "auditor", "audit.read", "--org", "acme")
    assert out.strip() == "Nothing to change."
    assert "unknown permission 'root.all'" in acme.fails(
        "roles", "grant", "auditor", "root.all", "--org", "acme"
    )
    # What the commands said is what the database holds.
    rows = acme.sql(
        "SELECT rp.permission FROM role_permissions rp JOIN roles r ON r.id = rp.role_id "
        "WHERE r.name = 'auditor'"
    )
    assert [row[0] for row in rows] == ["user_data.read"]
    updates = [e["details"] for e in _audit_events(acme) if e["event"] == "role.update"]
    assert updates == [
        {"before": ["audit.read"], "after": ["audit.read", "user_data.read"]},
        {"before": ["audit.read", "user_data.read"], "after": ["user_data.read"]},
    ]


# --- audit ------------------------------------------------------------------------------------


def test_audit_export_jsonl(acme: Cli) -> None:
    acme.ok("users", "set-role", "bob@acme.test", "admin", "--org", "acme")
    lines = acme.ok("audit", "export", "--format", "jsonl").splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["event"] for e in events] == [
        "oidc.client.create",  # init registers the gateway
        "org.create",
        "member.invite",
        "member.role_change",
    ]
    assert events[2]["target"] == "bob@acme.test"
    assert events[2]["user_agent"] == "bascule-cli"
    assert events[0]["prev_hash"] == "0" * 64
    for before, after in pairwise(events):
        assert after["prev_hash"] == before["hash"]
    assert all(datetime.fromisoformat(e["time"]).tzinfo is not None for e in events)


def test_audit_export_since(acme: Cli) -> None:
    acme.ok("orgs", "create", "globex")
    acme.ok("orgs", "create", "initech")
    events = _audit_events(acme)
    assert len(events) == 5
    fourth = events[3]
    since = _audit_events(acme, "--since", fourth["time"])
    assert [e["seq"] for e in since] == [4, 5]
    assert since[0] == fourth
    assert _audit_events(acme, "--since", "2000-01-01") == events
    assert acme.ok("audit", "export", "--since", "2999-01-01T00:00Z") == ""
    result = acme.run("audit", "export", "--since", "last tuesday")
    assert result.exit_code == 2
    assert "use an ISO 8601 time" in result.stderr
    assert "Traceback" not in result.stderr


def test_audit_verify_on_an_intact_chain(acme: Cli) -> None:
    out = acme.ok("audit", "verify")
    assert out.strip() == "Audit chain intact: 3 event(s) verified."
    assert acme.json("audit", "verify") == {
        "ok": True,
        "checked": 3,
        "first_bad_seq": None,
        "problem": None,
    }


def test_audit_verify_finds_an_edited_row(any_cli: Cli) -> None:
    cli = any_cli
    base = cli.json("audit", "verify")["checked"]  # what setting up the instance recorded
    cli.ok("orgs", "create", "acme")
    cli.ok("users", "create", "bob@acme.test", "--org", "acme", "--password-stdin", stdin=STRONG)
    cli.ok("users", "create", "eve@acme.test", "--org", "acme", "--password-stdin", stdin=STRONG)
    cli.ok("users", "set-role", "eve@acme.test", "owner", "--org", "acme")
    cli.ok("sessions", "revoke", "--user", "eve@acme.test")
    assert cli.json("audit", "verify")["checked"] == base + 5
    edited = base + 4

    # Someone with database access hides that eve was made an owner.
    cli.sql(
        "UPDATE audit_events SET target = 'bob@acme.test' WHERE seq = :seq AND event = :event",
        seq=edited,
        event="member.role_change",
    )
    result = cli.run("audit", "verify")
    assert result.exit_code == 1
    assert result.stdout.strip() == (
        f"Audit chain BROKEN at event {edited}: row content was changed "
        f"({edited - 1} event(s) before it verified)."
    )
    assert "Traceback" not in result.stderr
    result = cli.run("audit", "verify", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "ok": False,
        "checked": edited - 1,
        "first_bad_seq": edited,
        "problem": "row content was changed",
    }


def test_audit_verify_finds_a_rewritten_chain_and_a_deleted_row(acme: Cli) -> None:
    acme.ok("orgs", "create", "globex")
    acme.ok("orgs", "create", "initech")
    # Recomputing the edited row's own hash is not enough: the next row still points at the old.
    rows = acme.sql("SELECT seq, hash FROM audit_events ORDER BY seq")
    assert [seq for seq, _ in rows] == [1, 2, 3, 4, 5]
    acme.sql("UPDATE audit_events SET hash = :h WHERE seq = 2", h="f" * 64)
    verdict = acme.run("audit", "verify", "--json")
    assert verdict.exit_code == 1
    assert json.loads(verdict.stdout)["first_bad_seq"] == 2
    acme.sql("UPDATE audit_events SET hash = :h WHERE seq = 2", h=rows[1][1])
    assert acme.json("audit", "verify")["ok"] is True

    acme.sql("DELETE FROM audit_events WHERE seq = 3")
    verdict = acme.run("audit", "verify", "--json")
    assert verdict.exit_code == 1
    assert json.loads(verdict.stdout) == {
        "ok": False,
        "checked": 2,
        "first_bad_seq": 3,
        "problem": "row missing",
    }


# --- the instance itself ----------------------------------------------------------------------


def test_commands_before_init_say_what_to_do(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for name in list(os.environ):
        if name.startswith("BASCULE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BASCULE_INSTANCE_DIR", str(tmp_path / "instance"))
    monkeypatch.setenv("BASCULE_KEYS_DIR", str(tmp_path / "keys"))
    cli = Cli(tmp_path / "instance", "")
    assert "bascule init" in cli.fails("orgs", "create", "acme")


def test_bad_configuration_is_one_clear_line(cli: Cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("BASCULE_BCRYPT_ROUNDS", "three")
    message = cli.fails("orgs", "create", "acme")
    assert message.startswith("configuration: BASCULE_BCRYPT_ROUNDS='three'")


# --- OpenID Connect clients and keys ----------------------------------------------------------


def test_clients_create_prints_the_secret_once_and_stores_a_hash(cli: Cli) -> None:
    created = cli.json(
        "clients", "create", "--name", "Wiki", "--redirect-uri", "https://wiki.example/cb",
        "--post-logout-redirect-uri", "https://wiki.example/", "--json",
    )  # fmt: skip
    assert created["type"] == "confidential"
    assert created["redirect_uris"] == ["https://wiki.example/cb"]
    secret = created["client_secret"]
    stored = cli.sql("SELECT secret_hash FROM oauth_clients WHERE id = :i", i=created["client_id"])
    assert stored[0][0] not in (None, secret) and secret not in stored[0][0]
    listed = cli.json("clients", "list", "--json")
    assert secret not in json.dumps(listed)
    assert all("client_secret" not in c for c in listed)
    assert {c["client_id"] for c in listed} >= {created["client_id"], "bascule-gateway"}

    renewed = cli.json("clients", "reset-secret", created["client_id"], "--json")
    assert renewed["client_secret"] != secret
    assert cli.ok("clients", "delete", created["client_id"]).startswith("Deleted client")
    assert "No client" in cli.fails("clients", "delete", created["client_id"])


def test_public_client_gets_no_secret(cli: Cli) -> None:
    out = cli.ok(
        "clients", "create", "--name", "SPA", "--public", "--redirect-uri", "https://spa.example/cb"
    )
    assert "client_id:" in out and "client_secret" not in out


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("https://app.example/cb#frag", "must not have a fragment"),
        ("javascript:alert(1)", "absolute http(s) URL"),
        ("https://user:pw@app.example/cb", "must not carry credentials"),
    ],
)
def test_clients_create_refuses_unsafe_redirect_uris(cli: Cli, uri: str, message: str) -> None:
    assert message in cli.fails("clients", "create", "--name", "Bad", "--redirect-uri", uri)


def test_keys_rotate_keeps_old_keys_working(cli: Cli) -> None:
    before = {kid for (kid,) in cli.sql("SELECT kid FROM oauth_signing_keys")}
    rotated = cli.json("keys", "rotate", "--signing", "--data", "--json")
    *provider_keys, _gateway = rotated["signing_keys"]  # RS256, ES256, then the gateway's
    rows = cli.sql("SELECT kid, retired_at FROM oauth_signing_keys")
    assert {kid for kid, retired in rows if retired is None} == set(provider_keys)
    assert {kid for kid, retired in rows if retired is not None} == before
    # Private keys sealed under the old data key still unseal with the new one current.
    with app_context_for(cli) as app, app.test_client() as client:
        published = {key["kid"] for key in client.get("/oauth2/jwks").get_json()["keys"]}
    assert published >= before | set(rotated["signing_keys"])
    assert len(published) == len(before) + 3 + 1  # and the gateway's previous key
    assert "say which" in cli.run("keys", "rotate").stderr


@contextmanager
def app_context_for(cli: Cli) -> Iterator[Any]:
    flask_app = create_app(config.load(), dev_warning=False)
    with flask_app.app_context():
        try:
            yield flask_app
        finally:
            db.session.remove()
            db.engine.dispose()


# --- the gateway policy ------------------------------------------------------------------------


@pytest.fixture
def demo(cli: Cli) -> Cli:
    cli.ok("orgs", "create", "demo")
    for email, role in (("olga@demo.test", "owner"), ("mo@demo.test", "member")):
        cli.ok("users", "create", email, "--org", "demo", "--password-stdin", stdin=STRONG)
        cli.ok("users", "set-role", email, role, "--org", "demo")
    return cli


def test_policy_check_names_the_rule_and_the_decision(demo: Cli) -> None:
    assert demo.ok("policy", "check", "--url", "/billing", "--user", "mo@demo.test").startswith(
        "GET /billing: DENY by line"
    )
    found = demo.json("policy", "check", "--url", "http://gw.example/billing/", "--user",
                      "olga@demo.test", "--auth-age", "3600", "--json")  # fmt: skip
    assert found["decision"] == "step_up" and found["rule"]["path"] == "/billing/**"
    assert demo.json("policy", "check", "--url", "/_static/../billing", "--json")["decision"] == (
        "login"  # judged as /billing, not as the public /_static/** prefix
    )
    assert "refuses this URL" in demo.fails("policy", "check", "--url", "/billing%2f..")
    assert "no user" in demo.fails("policy", "check", "--url", "/", "--user", "nobody@x.test")


def test_policy_replay_lists_the_decisions_a_new_policy_would_change(
    demo: Cli, tmp_path: Path
) -> None:
    with app_context_for(demo):
        from idp.services import audit

        for path, result, permissions in (
            ("/billing", "deny", ["messages.send"]),
            ("/inbox", "allow", ["messages.send"]),
            ("/settings", "login", None),
        ):
            audit.record(
                "gateway.decision",
                outcome="success" if result == "allow" else "failure",
                details={"method": "GET", "path": path, "result": result,
                         "permissions": permissions, "amr": ["pwd"], "auth_time": 0},
            )  # fmt: skip
    assert demo.ok("policy", "replay").strip() == "0 of 3 recorded decisions would change."
    stricter = tmp_path / "stricter.toml"
    stricter.write_text(
        '[upstream]\nurl = "http://127.0.0.1:8090"\nname = "messaging"\norg = "demo"\n\n'
        '[[route]]\npath = "/inbox"\npermission = "settings.manage"\n'
    )
    replayed = demo.json("policy", "replay", "--policy", str(stricter), "--json")
    assert replayed["replayed"] == 3
    changed = {(c["path"], c["before"], c["after"]) for c in replayed["changes"]}
    # /billing stays refused; /settings now meets no rule at all, so deny instead of sign-in.
    assert changed == {("/inbox", "allow", "deny"), ("/settings", "login", "deny")}
