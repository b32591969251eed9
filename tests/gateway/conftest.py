"""The whole stack on loopback for gateway tests: the IdP (real HTTP server), the bundled
messaging app, and the gateway (aiohttp, in a thread with its own event loop) in front of it.

The IdP here runs on the real clock: the gateway judges session lifetimes by it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from aiohttp import web
from flask import Flask
from werkzeug.serving import make_server

from examples.messaging.app import create_app as create_messaging_app
from gateway.app import create_app as create_gateway_app
from idp.app import create_app
from idp.common.store import RedisStore
from idp.config import Settings
from idp.extensions import db
from idp.services import bootstrap
from tests.support import FlaskHolder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    idp_url: str
    gateway_url: str
    upstream_url: str
    idp: Flask
    settings: Settings


@contextmanager
def serve_wsgi(app: Flask, port: int) -> Iterator[None]:
    http = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        yield
    finally:
        http.shutdown()
        thread.join(5)


@contextmanager
def serve_gateway(settings: Settings, port: int, namespace: str) -> Iterator[None]:
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_gateway_app(settings, store_namespace=namespace))
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(runner.cleanup())
        loop.close()


@pytest.fixture
def stack(  # type: ignore[no-untyped-def]
    settings: Settings, store, server: tuple[str, FlaskHolder], tmp_path: Path
) -> Iterator[Stack]:
    gateway_port, upstream_port = free_port(), free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    upstream_url = f"http://127.0.0.1:{upstream_port}"
    settings = replace(settings, gateway_url=gateway_url, upstream_url=upstream_url)
    idp = create_app(settings, store=store)
    server[1].app = idp
    with idp.app_context():
        bootstrap.ensure_gateway_client(settings, renew_secret=True)
    namespace = store.namespace if isinstance(store, RedisStore) else "bascule:"
    messaging = create_messaging_app(server[0], gateway_url, data_path=tmp_path / "messaging.db")
    with (
        serve_wsgi(messaging, upstream_port),
        serve_gateway(settings, gateway_port, namespace),
        idp.app_context(),
    ):
        yield Stack(server[0], gateway_url, upstream_url, idp, settings)
    # Only now: the gateway's last audit batch reached the IdP as it stopped.
    with idp.app_context():
        db.session.remove()
        db.engine.dispose()
