"""The shared ephemeral store: sessions, counters, one-time tokens, revocation markers.

One interface, two backends. Redis when ``BASCULE_REDIS_URL`` is set; otherwise SQL tables in
the main database, so the embedded default needs no other server. Both enforce expiry on read
(an expired entry is never returned, whatever the clean-up has done so far) and both make the
read-modify-write operations (``add``, ``take``, ``incr``) atomic, because security decisions
(single-use tokens, rate limits) rest on them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import redis
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Float,
    String,
    Table,
    Text,
    case,
    cast,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import InterfaceError, OperationalError

from idp.common.database import make_engine
from idp.common.schema import metadata


class StoreUnavailable(RuntimeError):
    """The store cannot be reached; callers fail closed."""


class Store(Protocol):
    """What Bascule needs from a shared store. Values are strings; ``ttl`` is in seconds."""

    def get(self, key: str) -> str | None: ...
    def get_many(self, keys: Sequence[str]) -> list[str | None]: ...
    def put(self, key: str, value: str, ttl: float) -> None: ...
    def add(self, key: str, value: str, ttl: float) -> bool: ...
    def replace(self, key: str, value: str, ttl: float) -> bool: ...
    def take(self, key: str) -> str | None: ...
    def delete(self, *keys: str) -> None: ...
    def incr(self, key: str, ttl: float) -> int: ...
    def sadd(self, key: str, member: str, ttl: float) -> None: ...
    def srem(self, key: str, member: str) -> None: ...
    def smembers(self, key: str) -> set[str]: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...


kv_entries = Table(
    "kv_entries",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("value", Text, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
)

kv_members = Table(
    "kv_members",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("member", String(255), primary_key=True),
    Column("expires_at", Float, nullable=False, index=True),
)


class RedisStore:
    """The store on Redis: every operation is one round trip, atomic where it must be."""

    def __init__(self, url: str, namespace: str = "bascule:") -> None:
        self._redis = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2
        )
        self._ns = namespace

    @property
    def namespace(self) -> str:
        return self._ns

    def _k(self, key: str) -> str:
        return self._ns + key

    def _run(self, operation):  # type: ignore[no-untyped-def]
        try:
            return operation()
        except redis.RedisError as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    def get(self, key: str) -> str | None:
        return self._run(lambda: self._redis.get(self._k(key)))

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        return self._run(lambda: self._redis.mget([self._k(k) for k in keys]))

    def put(self, key: str, value: str, ttl: float) -> None:
        self._run(lambda: self._redis.set(self._k(key), value, px=_ms(ttl)))

    def add(self, key: str, value: str, ttl: float) -> bool:
        return bool(self._run(lambda: self._redis.set(self._k(key), value, px=_ms(ttl), nx=True)))

    def replace(self, key: str, value: str, ttl: float) -> bool:
        return bool(self._run(lambda: self._redis.set(self._k(key), value, px=_ms(ttl), xx=True)))

    def take(self, key: str) -> str | None:
        return self._run(lambda: self._redis.getdel(self._k(key)))

    def delete(self, *keys: str) -> None:
        if keys:
            self._run(lambda: self._redis.delete(*(self._k(k) for k in keys)))

    def incr(self, key: str, ttl: float) -> int:
        def operation() -> int:
            pipe = self._redis.pipeline(transaction=True)
            pipe.set(self._k(key), 0, px=_ms(ttl), nx=True)
            pipe.incr(self._k(key))
            return int(pipe.execute()[1])

        return self._run(operation)

    def sadd(self, key: str, member: str, ttl: float) -> None:
        def operation() -> None:
            pipe = self._redis.pipeline(transaction=True)
            pipe.sadd(self._k(key), member)
            pipe.pexpire(self._k(key), _ms(ttl))
            pipe.execute()

        self._run(operation)

    def srem(self, key: str, member: str) -> None:
        self._run(lambda: self._redis.srem(self._k(key), member))

    def smembers(self, key: str) -> set[str]:
        return set(self._run(lambda: self._redis.smembers(self._k(key))))

    def ping(self) -> None:
        self._run(self._redis.ping)

    def close(self) -> None:
        """Give back the connections (a later call reconnects)."""
        self._redis.close()

    def clear_namespace(self) -> None:
        """Delete every key of this namespace (tests use one namespace each)."""
        keys = list(self._redis.scan_iter(match=self._ns + "*", count=1000))
        if keys:
            self._redis.delete(*keys)


class SqlStore:
    """The store on SQL tables; each operation is its own short transaction.

    It uses its own engine, never the request's ORM session, so a store write is visible to
    other processes at once, as with Redis. Expired rows are skipped on read and swept now and
    then on write.
    """

    SWEEP_PROBABILITY = 0.01

    def __init__(self, url_or_engine: str | Engine, clock=time.time) -> None:  # type: ignore[no-untyped-def]
        self._engine = (
            make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        )
        self._clock = clock
        dialect = self._engine.dialect.name
        # Both dialects' inserts offer on_conflict_do_update; their stubs disagree, hence Any.
        self._insert: Callable[[Table], Any] = {
            "postgresql": postgresql.insert,
            "sqlite": sqlite.insert,
        }[dialect]

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """One transaction; a database that cannot be reached (on connect or mid-way) is
        StoreUnavailable, so callers fail closed. Other errors are bugs and stay what they are."""
        try:
            with self._engine.begin() as conn:
                yield conn
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(f"sql store: {exc}") from exc

    def _live(self, now: float):  # type: ignore[no-untyped-def]
        return kv_entries.c.expires_at > now

    def get(self, key: str) -> str | None:
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        now = self._clock()
        with self._tx() as conn:
            rows = conn.execute(
                select(kv_entries.c.key, kv_entries.c.value).where(
                    kv_entries.c.key.in_(keys), self._live(now)
                )
            ).all()
        found = dict(rows)
        return [found.get(k) for k in keys]

    def put(self, key: str, value: str, ttl: float) -> None:
        now = self._clock()
        stmt = self._insert(kv_entries).values(key=key, value=value, expires_at=now + ttl)
        stmt = stmt.on_conflict_do_update(
            index_elements=[kv_entries.c.key],
            set_={"value": stmt.excluded.value, "expires_at": stmt.excluded.expires_at},
        )
        with self._tx() as conn:
            conn.execute(stmt)
            self._maybe_sweep(conn, now)

    def add(self, key: str, value: str, ttl: float) -> bool:
        now = self._clock()
        stmt = self._insert(kv_entries).values(key=key, value=value, expires_at=now + ttl)
        # Replace only an expired row: a live one means the key is taken.
        stmt = stmt.on_conflict_do_update(
            index_elements=[kv_entries.c.key],
            set_={"value": stmt.excluded.value, "expires_at": stmt.excluded.expires_at},
            where=kv_entries.c.expires_at <= now,
        ).returning(kv_entries.c.key)
        with self._tx() as conn:
            return conn.execute(stmt).first() is not None

    def replace(self, key: str, value: str, ttl: float) -> bool:
        now = self._clock()
        stmt = (
            update(kv_entries)
            .where(kv_entries.c.key == key, self._live(now))
            .values(value=value, expires_at=now + ttl)
        )
        with self._tx() as conn:
            return bool(conn.execute(stmt).rowcount)

    def take(self, key: str) -> str | None:
        now = self._clock()
        stmt = (
            delete(kv_entries)
            .where(kv_entries.c.key == key)
            .returning(kv_entries.c.value, kv_entries.c.expires_at)
        )
        with self._tx() as conn:
            row = conn.execute(stmt).first()
        if row is None or row.expires_at <= now:
            return None
        return str(row.value)

    def delete(self, *keys: str) -> None:
        if keys:
            with self._tx() as conn:
                conn.execute(delete(kv_entries).where(kv_entries.c.key.in_(keys)))
                conn.execute(delete(kv_members).where(kv_members.c.key.in_(keys)))

    def incr(self, key: str, ttl: float) -> int:
        now = self._clock()
        stmt = self._insert(kv_entries).values(key=key, value="1", expires_at=now + ttl)
        current = cast(cast(kv_entries.c.value, BigInteger) + 1, Text)
        stmt = stmt.on_conflict_do_update(
            index_elements=[kv_entries.c.key],
            set_={
                # An expired counter starts again at 1 with a fresh expiry.
                "value": func.coalesce(_if(kv_entries.c.expires_at <= now, "1", current), "1"),
                "expires_at": _if(
                    kv_entries.c.expires_at <= now, now + ttl, kv_entries.c.expires_at
                ),
            },
        ).returning(kv_entries.c.value)
        with self._tx() as conn:
            return int(conn.execute(stmt).scalar_one())

    def sadd(self, key: str, member: str, ttl: float) -> None:
        now = self._clock()
        stmt = self._insert(kv_members).values(key=key, member=member, expires_at=now + ttl)
        stmt = stmt.on_conflict_do_update(
            index_elements=[kv_members.c.key, kv_members.c.member],
            set_={"expires_at": stmt.excluded.expires_at},
        )
        with self._tx() as conn:
            conn.execute(stmt)

    def srem(self, key: str, member: str) -> None:
        with self._tx() as conn:
            conn.execute(
                delete(kv_members).where(kv_members.c.key == key, kv_members.c.member == member)
            )

    def smembers(self, key: str) -> set[str]:
        now = self._clock()
        with self._tx() as conn:
            rows = conn.execute(
                select(kv_members.c.member).where(
                    kv_members.c.key == key, kv_members.c.expires_at > now
                )
            ).scalars()
            return set(rows)

    def ping(self) -> None:
        with self._tx() as conn:
            conn.execute(select(1))

    def close(self) -> None:
        """Give back the connections (a later call reconnects)."""
        self._engine.dispose()

    def _maybe_sweep(self, conn: Connection, now: float) -> None:
        if random.random() < self.SWEEP_PROBABILITY:  # noqa: S311 -- load spreading, not security
            conn.execute(delete(kv_entries).where(kv_entries.c.expires_at <= now))
            conn.execute(delete(kv_members).where(kv_members.c.expires_at <= now))


def _if(condition, then, otherwise):  # type: ignore[no-untyped-def]
    return case((condition, then), else_=otherwise)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def open_store(redis_url: str | None, sql_url: str, namespace: str = "bascule:") -> Store:
    """The store the settings ask for: Redis when a URL is given, else the SQL tables."""
    if redis_url:
        return RedisStore(redis_url, namespace=namespace)
    return SqlStore(sql_url)
