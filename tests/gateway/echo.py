"""An upstream for gateway tests that shows what the gateway sent it.

Every plain request is answered with JSON naming the method, the raw request target, the raw
header lines as they arrived and the peer address (and is kept in ``Echo.seen``), so a test
can prove what the upstream saw and what it never saw. A last path segment ``source`` streams
``?bytes=N`` bytes of a known pattern, ``sink`` reads the body and answers its size and
SHA-256, and a WebSocket upgrade is answered by an echo socket (subprotocol ``chat`` on offer).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

BLOCK = random.Random(7).randbytes(1 << 20)  # the streamed pattern: this MiB, repeated
CHUNK = 64 * 1024


def pattern_digest(size: int) -> str:
    """SHA-256 of the first ``size`` bytes of the pattern (``size`` a multiple of a MiB)."""
    digest = hashlib.sha256()
    for _ in range(size // len(BLOCK)):
        digest.update(BLOCK)
    return digest.hexdigest()


@dataclass
class Echo:
    url: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)

    def targets(self) -> list[str]:
        return [str(entry["target"]) for entry in self.seen]

    def last_headers(self) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self.seen[-1]["headers"]]


def _app(echo: Echo) -> web.Application:
    @web.middleware
    async def everything(request: web.Request, handler: Any) -> web.StreamResponse:
        del handler  # like the gateway: no router between the socket and this code
        entry = {
            "method": request.method,
            "target": request.raw_path,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers],
            "peer": list(request.transport.get_extra_info("peername") if request.transport else ()),
        }
        echo.seen.append(entry)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await _websocket(request)
        last = request.path.rstrip("/").rsplit("/", 1)[-1]
        if last == "source":
            return await _source(request, int(request.query["bytes"]))
        if last == "sink":
            return await _sink(request)
        body = b"" if request.method == "HEAD" else await request.read()
        return web.json_response({**entry, "body_bytes": len(body)})

    return web.Application(middlewares=[everything], client_max_size=1 << 20)


async def _websocket(request: web.Request) -> web.StreamResponse:
    socket = web.WebSocketResponse(protocols=("chat",))
    await socket.prepare(request)
    async for message in socket:
        if message.type is aiohttp.WSMsgType.TEXT:
            await socket.send_str("echo: " + message.data)
        elif message.type is aiohttp.WSMsgType.BINARY:
            await socket.send_bytes(message.data)
    return socket


async def _source(request: web.Request, size: int) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = size
    await response.prepare(request)
    view = memoryview(BLOCK)
    for _ in range(size // len(BLOCK)):
        for start in range(0, len(BLOCK), CHUNK):
            await response.write(view[start : start + CHUNK])
    await response.write_eof()
    return response


async def _sink(request: web.Request) -> web.StreamResponse:
    digest, size = hashlib.sha256(), 0
    async for chunk in request.content.iter_chunked(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return web.json_response({"bytes": size, "sha256": digest.hexdigest()})


@contextmanager
def serve_echo() -> Iterator[Echo]:
    """The echo upstream on a free loopback port, in a thread with its own event loop."""
    echo = Echo()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_app(echo), shutdown_timeout=1)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    echo.url = f"http://127.0.0.1:{port}"
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        yield echo
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(runner.cleanup())
        loop.close()
