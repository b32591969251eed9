"""Engine settings that both the IdP and the gateway need for the same database."""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Engine, create_engine, event

SQLITE_BUSY_TIMEOUT_SECONDS = 10


def engine_options(url: str) -> dict[str, Any]:
    """Options for create_engine (and flask-sqlalchemy) that suit the database in ``url``."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}}
    return {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 10}


def make_engine(url: str) -> Engine:
    return create_engine(url, **engine_options(url))


@event.listens_for(Engine, "connect")
def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers run beside the one writer; foreign keys are off by default in SQLite."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
