"""Unit-level fixtures: the shared store alone, on each backend."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from idp.common.store import RedisStore, SqlStore, Store
from tests.conftest import REDIS_URL, fresh_database, pg_reason, redis_reason


@pytest.fixture(params=["sql-sqlite", "sql-postgres", "redis"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each backend in turn: the SQL store on SQLite and on PostgreSQL, and Redis."""
    if request.param == "redis":
        if reason := redis_reason():
            pytest.skip(reason)
        redis_store = RedisStore(REDIS_URL, namespace=f"bascule-test:{uuid.uuid4().hex}:")
        yield redis_store
        redis_store.clear_namespace()
        return
    backend = "sqlite" if request.param == "sql-sqlite" else "postgres"
    if backend == "postgres" and (reason := pg_reason()):
        pytest.skip(reason)
    with fresh_database(backend, tmp_path, request) as url:
        sql = SqlStore(url)
        yield sql
        sql._engine.dispose()
