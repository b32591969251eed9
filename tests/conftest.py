"""Fixtures: a fresh database and store per test, on SQLite and on PostgreSQL + Redis.

Every test that takes ``backend`` (directly or through ``app``) runs once per backend:
``sqlite`` (SQLite file, SQL-backed store: the embedded default) and ``postgres+redis``.
The PostgreSQL variant gets its own database cloned from a migrated template, and its own
Redis key namespace, so tests share nothing. When PostgreSQL or Redis is not reachable that
variant is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from flask import Flask
from werkzeug.serving import make_server

from idp.app import create_app
from idp.common.clock import FrozenClock
from idp.common.sealing import create_data_key
from idp.common.store import RedisStore, SqlStore
from idp.config import Settings
from tests.support import FlaskHolder

PG_ADMIN_URL = os.environ.get("BASCULE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BASCULE_TEST_REDIS", "redis://127.0.0.1:6379/15")
BACKENDS = ["sqlite", "postgres+redis"]


def pg_reason() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=2):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {str(exc).strip()[:120]}"


def redis_reason() -> str | None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        return None
    except redis.RedisError as exc:
        return f"Redis not reachable at {REDIS_URL}: {exc}"


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys")
    create_data_key(path)
    return path


def _settings(instance: Path, keys: Path, **values: Any) -> Settings:
    return Settings(instance_dir=instance, keys_dir=keys, bcrypt_rounds=4, **values)


def _migrate(settings: Settings) -> None:
    from idp.services import bootstrap

    app = create_app(settings)
    with app.app_context():
        bootstrap.upgrade_schema()
        from idp.extensions import db

        db.engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path) -> Path:
    instance = tmp_path_factory.mktemp("sqlite-template")
    _migrate(_settings(instance, keys_dir))
    return instance / "bascule.db"


@pytest.fixture(scope="session")
def pg_template(keys_dir: Path) -> Iterator[str]:
    reason = pg_reason()
    if reason:
        pytest.skip(reason)
    name = f"bascule_tmpl_{os.getpid()}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    _migrate(_settings(Path("/nonexistent"), keys_dir, database_url=_pg_url(name)))
    yield name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_url(database: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{database}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres+redis":
        reason = pg_reason() or redis_reason()
        if reason:
            pytest.skip(reason)
    return str(request.param)


@contextmanager
def fresh_database(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated database of its own: a copy of the SQLite template, or a PostgreSQL clone."""
    if backend == "sqlite":
        (tmp_path / "instance").mkdir(exist_ok=True)
        target = tmp_path / "instance" / "bascule.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), target)
        yield f"sqlite:///{target}"
        return
    template = request.getfixturevalue("pg_template")
    name = f"bascule_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield _pg_url(name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated database for this test."""
    with fresh_database(backend, tmp_path, request) as url:
        yield url


@pytest.fixture
def store(backend: str, database_url: str) -> Iterator[RedisStore | SqlStore]:
    if backend == "sqlite":
        sql_store = SqlStore(database_url)
        yield sql_store
        sql_store._engine.dispose()
        return
    redis_store = RedisStore(REDIS_URL, namespace=f"bascule-test:{uuid.uuid4().hex}:")
    yield redis_store
    redis_store.clear_namespace()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def server() -> Iterator[tuple[str, FlaskHolder]]:
    """A real HTTP server on loopback; the app is plugged in once its URL is known."""
    holder = FlaskHolder()
    http = make_server("127.0.0.1", 0, holder, threaded=True)
    # A short poll: shutdown() waits for it, and every test using the server pays it once.
    thread = threading.Thread(
        target=http.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{http.server_port}", holder
    http.shutdown()
    thread.join(5)


@pytest.fixture
def settings(
    server: tuple[str, FlaskHolder],
    tmp_path: Path,
    keys_dir: Path,
    database_url: str,
    backend: str,
) -> Settings:
    return _settings(
        tmp_path / "instance",
        keys_dir,
        issuer=server[0],
        database_url=database_url,
        redis_url=REDIS_URL if backend == "postgres+redis" else None,
    )


@pytest.fixture
def app(settings: Settings, store, clock: FrozenClock, server):  # type: ignore[no-untyped-def]
    flask_app = create_app(settings, store=store, clock=clock)
    server[1].app = flask_app
    with flask_app.app_context():
        yield flask_app
        from idp.extensions import db

        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def extra_app(store, clock: FrozenClock) -> Iterator[Callable[..., Flask]]:
    """Build further apps (other settings or store) whose engines are closed after the test."""
    built: list[Flask] = []

    def build(settings: Settings, **kwargs: Any) -> Flask:
        kwargs.setdefault("store", store)
        kwargs.setdefault("clock", clock)
        flask_app = create_app(settings, **kwargs)
        built.append(flask_app)
        return flask_app

    yield build
    from idp.extensions import db

    for flask_app in built:
        with flask_app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def base_url(app, server) -> str:  # type: ignore[no-untyped-def]
    return str(server[0])


@pytest.fixture
def browser_client(base_url: str) -> Iterator[httpx.Client]:
    """An HTTP client that keeps cookies and does not follow redirects (tests look at them)."""
    with httpx.Client(base_url=base_url, timeout=30, headers={"Accept": "text/html"}) as client:
        yield client


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how many tests ran on each backend, so a skipped PostgreSQL run cannot hide."""
    buckets = {"sqlite": "sqlite", "postgresql": "postgres", "redis": "redis"}
    counts = {name: dict.fromkeys(("passed", "failed", "skipped"), 0) for name in buckets}
    for outcome in ("passed", "failed", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            params = report.nodeid.rpartition("[")[2] if report.nodeid.endswith("]") else ""
            for name, marker in buckets.items():
                if marker in params:
                    counts[name][outcome] += 1
    terminalreporter.write_sep("=", "tests per backend")
    for name, numbers in counts.items():
        terminalreporter.write_line(
            f"{name:12} {numbers['passed']} passed, {numbers['failed']} failed, "
            f"{numbers['skipped']} skipped"
        )
