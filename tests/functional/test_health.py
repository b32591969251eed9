"""Liveness, readiness (503 when a dependency is down) and metrics."""

from __future__ import annotations

import dataclasses

import httpx

from idp.common.store import RedisStore
from tests.support import STRONG_PASSWORD, make_user, sign_in


def test_ready_when_database_and_store_answer(app, browser_client: httpx.Client) -> None:
    assert browser_client.get("/healthz").json() == {"status": "ok"}
    ready = browser_client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "store": "ok"}


def test_not_ready_when_the_store_is_down(settings, extra_app) -> None:
    dead_store = RedisStore("redis://127.0.0.1:1/0")  # nothing listens on port 1
    response = extra_app(settings, store=dead_store).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"] == {"database": "ok", "store": "unreachable"}


def test_not_ready_when_the_database_is_down(settings, extra_app) -> None:
    down = dataclasses.replace(
        settings, database_url="postgresql+psycopg://nobody@127.0.0.1:1/none"
    )
    response = extra_app(down).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["database"] == "unreachable"


def test_metrics_count_sign_ins(app, browser_client: httpx.Client) -> None:
    def count(result: str) -> float:
        for line in browser_client.get("/metrics").text.splitlines():
            if line.startswith(f'bascule_sign_ins_total{{result="{result}"}}'):
                return float(line.split()[-1])
        return 0.0

    make_user(app)
    before_ok, before_bad = count("success"), count("failure")
    sign_in(browser_client, "jane@acme.test", "wrong password here")
    sign_in(browser_client, "jane@acme.test", STRONG_PASSWORD)
    assert count("success") == before_ok + 1
    assert count("failure") == before_bad + 1
