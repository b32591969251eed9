"""The app's data in one SQLite file, through the standard library: messages, members, settings,
billing, and the CSRF secret. Everything but the secret is kept per organisation (the assertion's
``org``), so two organisations behind the same gateway never see each other's data.

A connection per call: SQLite opens in microseconds, and nothing is shared between the threads
or processes of a WSGI server. WAL mode lets readers go on while one worker writes.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org TEXT NOT NULL,
    author_sub TEXT NOT NULL,
    author_email TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    edited_at REAL,
    edited_by TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_org ON messages (org, id);
CREATE TABLE IF NOT EXISTS members (
    org TEXT NOT NULL,
    sub TEXT NOT NULL,
    email TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (org, sub)
);
CREATE TABLE IF NOT EXISTS settings (
    org TEXT PRIMARY KEY,
    workspace_name TEXT NOT NULL,
    announcement TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS billing (
    org TEXT PRIMARY KEY,
    plan TEXT NOT NULL,
    changed_at REAL NOT NULL,
    changed_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS app_secret (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    secret BLOB NOT NULL
);
"""
PAGE_SIZE = 50
SEEN_EVERY = 60  # seconds: a member's last_seen is written at most this often, not per request


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    org: str
    author_sub: str
    author_email: str
    body: str
    created_at: float
    edited_at: float | None
    edited_by: str | None


@dataclass(frozen=True, slots=True)
class Member:
    sub: str
    email: str
    first_seen: float
    last_seen: float
    messages: int


@dataclass(frozen=True, slots=True)
class Settings:
    workspace_name: str
    announcement: str


@dataclass(frozen=True, slots=True)
class Billing:
    plan: str
    changed_at: float | None
    changed_by: str | None


DEFAULT_SETTINGS = Settings(workspace_name="Messages", announcement="")
DEFAULT_PLAN = "free"


class Store:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed when the block ends, rolled back on error, then closed."""
        connection = sqlite3.connect(self.path, timeout=5)
        connection.row_factory = sqlite3.Row
        try:
            with connection:
                yield connection
        finally:
            connection.close()

    def create(self) -> None:
        """Create the file and tables if missing, and the CSRF secret on first start."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            # INSERT OR IGNORE: several workers may start at once; the first one's secret wins.
            db.execute(
                "INSERT OR IGNORE INTO app_secret (id, secret) VALUES (1, ?)",
                (secrets.token_bytes(32),),
            )

    def ping(self) -> None:
        with self._connect() as db:
            db.execute("SELECT 1")

    def secret(self) -> bytes:
        with self._connect() as db:
            return bytes(db.execute("SELECT secret FROM app_secret WHERE id = 1").fetchone()[0])

    # --- messages ------------------------------------------------------------------------------

    def messages(self, org: str, before: int | None = None) -> list[Message]:
        """The organisation's messages, newest first, a page at a time (older than ``before``)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM messages WHERE org = ? AND id < ? ORDER BY id DESC LIMIT ?",
                (org, before if before is not None else 2**63 - 1, PAGE_SIZE),
            ).fetchall()
        return [Message(**row) for row in rows]

    def message(self, org: str, message_id: int) -> Message | None:
        """One message of ``org``; another organisation's message is as absent as a missing one."""
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM messages WHERE org = ? AND id = ?", (org, message_id)
            ).fetchone()
        return None if row is None else Message(**row)

    def send(self, org: str, author_sub: str, author_email: str, body: str) -> int:
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO messages (org, author_sub, author_email, body, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (org, author_sub, author_email, body, self._clock()),
            )
        assert cursor.lastrowid is not None  # an INSERT into a rowid table always sets it
        return cursor.lastrowid

    def edit(self, org: str, message_id: int, body: str, editor_email: str) -> bool:
        """Replace a message's text, noting who edited it; False when there is no such message."""
        with self._connect() as db:
            cursor = db.execute(
                "UPDATE messages SET body = ?, edited_at = ?, edited_by = ?"
                " WHERE org = ? AND id = ?",
                (body, self._clock(), editor_email, org, message_id),
            )
        return cursor.rowcount == 1

    # --- members -------------------------------------------------------------------------------

    def seen(self, org: str, sub: str, email: str) -> None:
        """Record that a member used the app: the directory lists whoever the gateway let in."""
        now = self._clock()
        with self._connect() as db:
            db.execute(
                "INSERT INTO members (org, sub, email, first_seen, last_seen)"
                " VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (org, sub) DO UPDATE SET email = excluded.email,"
                " last_seen = excluded.last_seen"
                " WHERE members.email != excluded.email OR members.last_seen < ?",
                (org, sub, email, now, now, now - SEEN_EVERY),
            )

    def members(self, org: str) -> list[Member]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT m.sub, m.email, m.first_seen, m.last_seen,"
                " (SELECT COUNT(*) FROM messages WHERE org = m.org AND author_sub = m.sub)"
                " AS messages"
                " FROM members AS m WHERE m.org = ? ORDER BY m.email",
                (org,),
            ).fetchall()
        return [Member(**row) for row in rows]

    def messages_by(self, org: str, author_sub: str) -> list[Message]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM messages WHERE org = ? AND author_sub = ? ORDER BY id",
                (org, author_sub),
            ).fetchall()
        return [Message(**row) for row in rows]

    # --- settings and billing ------------------------------------------------------------------

    def settings(self, org: str) -> Settings:
        with self._connect() as db:
            row = db.execute(
                "SELECT workspace_name, announcement FROM settings WHERE org = ?", (org,)
            ).fetchone()
        return DEFAULT_SETTINGS if row is None else Settings(**row)

    def save_settings(self, org: str, settings: Settings) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO settings (org, workspace_name, announcement) VALUES (?, ?, ?)"
                " ON CONFLICT (org) DO UPDATE SET workspace_name = excluded.workspace_name,"
                " announcement = excluded.announcement",
                (org, settings.workspace_name, settings.announcement),
            )

    def billing(self, org: str) -> Billing:
        with self._connect() as db:
            row = db.execute(
                "SELECT plan, changed_at, changed_by FROM billing WHERE org = ?", (org,)
            ).fetchone()
        return Billing(DEFAULT_PLAN, None, None) if row is None else Billing(**row)

    def set_plan(self, org: str, plan: str, changed_by: str) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO billing (org, plan, changed_at, changed_by) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (org) DO UPDATE SET plan = excluded.plan,"
                " changed_at = excluded.changed_at, changed_by = excluded.changed_by",
                (org, plan, self._clock(), changed_by),
            )
