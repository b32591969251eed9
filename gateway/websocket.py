"""WebSocket upgrades, checked by the policy like any request, then bridged both ways."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from gateway import pages

# Negotiated again between the gateway and the upstream: never copied through.
WEBSOCKET_HEADERS = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
     "sec-websocket-accept", "sec-websocket-protocol"}
)  # fmt: skip


def is_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def bridge(
    request: web.Request, http: aiohttp.ClientSession, url: URL, headers: CIMultiDict[str]
) -> web.StreamResponse:
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    forwarded = {k: v for k, v in headers.items() if k.lower() not in WEBSOCKET_HEADERS}
    try:
        upstream = await http.ws_connect(
            url.with_scheme("wss" if url.scheme == "https" else "ws"),
            headers=forwarded,
            protocols=[p for p in protocols if p],
        )
    except (aiohttp.ClientError, TimeoutError):
        return pages.problem(request, 502, "The application cannot be reached.")
    client = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else ())
    await client.prepare(request)

    async def pump(
        source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    ) -> None:
        async for message in source:
            if message.type is aiohttp.WSMsgType.TEXT:
                await sink.send_str(message.data)
            elif message.type is aiohttp.WSMsgType.BINARY:
                await sink.send_bytes(message.data)
            else:
                break
        await sink.close()

    await asyncio.gather(pump(client, upstream), pump(upstream, client), return_exceptions=True)
    await upstream.close()
    return client
