"""The whole stack on loopback for gateway tests: the IdP (real HTTP server), the bundled
messaging app, and the gateway (its own server on uvloop, in a thread) in front of it.
``echo_stack`` puts the echo upstream (tests/gateway/echo.py) behind the gateway instead, and
can start more gateways on the same IdP and store with changed settings.

The IdP here runs on the real clock: the gateway judges session lifetimes by it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import uvloop
from flask import Flask
from werkzeug.serving import make_server

from examples.messaging.app import create_app as create_messaging_app
from gateway.app import create_app as create_gateway_app
from gateway.server import HttpServer
from idp.app import create_app
from idp.common.store import RedisStore
from idp.config import Settings
from idp.extensions import db
from idp.services import bootstrap
from tests.gateway.echo import Echo, serve_echo
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
    """As gateway.worker runs it, on one socket, in a thread."""
    loop = uvloop.new_event_loop()
    gateway = create_gateway_app(settings, store_namespace=namespace)
    server = HttpServer(gateway)
    loop.run_until_complete(gateway.start())
    loop.run_until_complete(server.listen(socket.create_server(("127.0.0.1", port))))
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(server.close(grace=1))
        loop.run_until_complete(gateway.stop())
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


class UpstreamRecorder:
    """WSGI middleware: what each request reaching the upstream carried (path and headers)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.requests: list[tuple[str, dict[str, str]]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        headers = {
            key[5:].replace("_", "-").lower(): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        self.requests.append((str(environ.get("PATH_INFO", "")), headers))
        return self.app(environ, start_response)


@dataclass
class FrontedStack:
    """The stack for a front proxy (nginx, Caddy …) that the test runs on ``front_port``.

    ``stack.gateway_url`` is the front proxy's URL: the gateway's public URL
    (BASCULE_GATEWAY_URL), so its redirects and the OIDC callback come back through the proxy,
    and the assertion's ``iss``. The gateway itself listens on ``gateway_port`` and the
    messaging app on ``upstream_port``; ``upstream`` records what reached the app.
    """

    stack: Stack
    front_port: int
    gateway_port: int
    upstream_port: int
    upstream: UpstreamRecorder


@pytest.fixture
def fronted_stack(  # type: ignore[no-untyped-def]
    settings: Settings, store, server: tuple[str, FlaskHolder], tmp_path: Path
) -> Iterator[FrontedStack]:
    front_port, gateway_port, upstream_port = free_port(), free_port(), free_port()
    public_url = f"http://127.0.0.1:{front_port}"
    settings = replace(
        settings,
        gateway_url=public_url,
        upstream_url=f"http://127.0.0.1:{upstream_port}",
        trusted_proxy_count=1,  # the front proxy appends the peer to X-Forwarded-For
    )
    idp = create_app(settings, store=store)
    server[1].app = idp
    with idp.app_context():
        bootstrap.ensure_gateway_client(settings, renew_secret=True)
    namespace = store.namespace if isinstance(store, RedisStore) else "bascule:"
    messaging = create_messaging_app(server[0], public_url, data_path=tmp_path / "messaging.db")
    recorder = UpstreamRecorder(messaging.wsgi_app)
    messaging.wsgi_app = recorder  # type: ignore[method-assign]
    with (
        serve_wsgi(messaging, upstream_port),
        serve_gateway(settings, gateway_port, namespace),
        idp.app_context(),
    ):
        stack = Stack(server[0], public_url, settings.upstream_url or "", idp, settings)
        yield FrontedStack(stack, front_port, gateway_port, upstream_port, recorder)
    with idp.app_context():
        db.session.remove()
        db.engine.dispose()


@dataclass
class EchoStack(Stack):
    echo: Echo
    namespace: str

    @contextmanager
    def gateway(self, **changes: Any) -> Iterator[str]:
        """One more gateway process on the same IdP, keys and store, with ``changes`` to its
        settings (same public URL, so cookies and redirect URIs are those of the first)."""
        port = free_port()
        with serve_gateway(replace(self.settings, **changes), port, self.namespace):
            yield f"http://127.0.0.1:{port}"


@pytest.fixture
def echo_stack(  # type: ignore[no-untyped-def]
    settings: Settings, store, server: tuple[str, FlaskHolder]
) -> Iterator[EchoStack]:
    gateway_port = free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    namespace = store.namespace if isinstance(store, RedisStore) else "bascule:"
    with serve_echo() as echo:
        settings = replace(settings, gateway_url=gateway_url, upstream_url=echo.url)
        idp = create_app(settings, store=store)
        server[1].app = idp
        with idp.app_context():
            bootstrap.ensure_gateway_client(settings, renew_secret=True)
        with serve_gateway(settings, gateway_port, namespace), idp.app_context():
            yield EchoStack(server[0], gateway_url, echo.url, idp, settings, echo, namespace)
        with idp.app_context():
            db.session.remove()
            db.engine.dispose()
