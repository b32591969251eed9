"""The shared store's contract, on every backend: Redis, SQL on SQLite, SQL on PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from idp.common.store import RedisStore, Store
from tests.conftest import REDIS_URL, redis_reason


def _wait_until_gone(store: Store, key: str, set_key: str | None = None) -> None:
    """Real expiry runs on the store's own clock (Redis's, the database's): poll, bounded."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (
        store.get(key) is not None or (set_key and store.smembers(set_key))
    ):
        time.sleep(0.02)


def test_set_get_delete(any_store: Store) -> None:
    assert any_store.get("a") is None
    any_store.put("a", "1", 60)
    any_store.put("a", "2", 60)
    assert any_store.get("a") == "2"
    assert any_store.get_many(["a", "missing"]) == ["2", None]
    any_store.delete("a")
    assert any_store.get("a") is None


def test_expiry_is_enforced_on_read(any_store: Store) -> None:
    any_store.put("short", "x", 0.05)
    any_store.sadd("set", "m", 0.05)
    _wait_until_gone(any_store, "short", "set")
    assert any_store.get("short") is None
    assert any_store.smembers("set") == set()
    assert any_store.take("short") is None
    assert any_store.add("short", "again", 60) is True  # an expired key is free again


def test_add_is_set_if_absent(any_store: Store) -> None:
    assert any_store.add("once", "first", 60) is True
    assert any_store.add("once", "second", 60) is False
    assert any_store.get("once") == "first"


def test_replace_writes_only_over_a_live_entry(any_store: Store) -> None:
    """A session's last-seen write must not bring back a session revoked meanwhile."""
    assert any_store.replace("session", "touched", 60) is False
    assert any_store.get("session") is None
    any_store.put("session", "live", 60)
    assert any_store.replace("session", "touched", 60) is True
    assert any_store.get("session") == "touched"
    any_store.delete("session")
    assert any_store.replace("session", "again", 60) is False
    assert any_store.get("session") is None


def test_take_returns_once(any_store: Store) -> None:
    any_store.put("token", "payload", 60)
    assert any_store.take("token") == "payload"
    assert any_store.take("token") is None


def test_take_is_atomic_under_concurrency(any_store: Store) -> None:
    """Twenty threads race for one single-use token: exactly one wins."""
    any_store.put("race", "prize", 60)
    winners: list[str] = []
    barrier = threading.Barrier(20)

    def grab() -> None:
        barrier.wait()
        if (value := any_store.take("race")) is not None:
            winners.append(value)

    threads = [threading.Thread(target=grab) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert winners == ["prize"]


def test_incr_counts_atomically_and_restarts_after_expiry(any_store: Store) -> None:
    results: list[int] = []
    lock = threading.Lock()

    def bump() -> None:
        for _ in range(10):
            value = any_store.incr("counter", 60)
            with lock:
                results.append(value)

    threads = [threading.Thread(target=bump) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == list(range(1, 51))

    any_store.incr("brief", 0.05)
    _wait_until_gone(any_store, "brief")
    assert any_store.incr("brief", 60) == 1


def test_sets(any_store: Store) -> None:
    any_store.sadd("s", "a", 60)
    any_store.sadd("s", "b", 60)
    any_store.sadd("s", "a", 60)
    assert any_store.smembers("s") == {"a", "b"}
    any_store.srem("s", "a")
    assert any_store.smembers("s") == {"b"}
    any_store.delete("s")
    assert any_store.smembers("s") == set()


def test_ping(any_store: Store) -> None:
    any_store.ping()


def test_redis_namespaces_do_not_see_each_other() -> None:
    if reason := redis_reason():
        pytest.skip(reason)
    mine = RedisStore(REDIS_URL, namespace=f"bascule-test:{uuid.uuid4().hex}:")
    other = RedisStore(REDIS_URL, namespace=f"bascule-test:{uuid.uuid4().hex}:")
    mine.put("k", "mine", 60)
    assert other.get("k") is None
    mine.clear_namespace()
