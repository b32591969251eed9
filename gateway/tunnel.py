"""Two connections joined byte for byte, once both sides agreed to an upgrade (WebSocket).

The gateway judged the upgrade request like any other; after the upstream's 101 nothing more
is HTTP, so each side's bytes go to the other as they come, with back-pressure (a side that
cannot keep up pauses the other's reading), until either closes.
"""

from __future__ import annotations

import asyncio


class _Half(asyncio.Protocol):
    """Reads one side and writes to its peer."""

    def __init__(self, peer: asyncio.Transport, closed: asyncio.Future[None]) -> None:
        self.peer = peer
        self.closed = closed

    def data_received(self, data: bytes) -> None:
        self.peer.write(data)

    def eof_received(self) -> bool:
        self.peer.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.peer.close()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        if not self.peer.is_closing():
            self.peer.pause_reading()

    def resume_writing(self) -> None:
        if not self.peer.is_closing():
            self.peer.resume_reading()


async def splice(
    upstream: asyncio.Transport, from_upstream: bytes, client: asyncio.Transport, from_client: bytes
) -> None:
    """Join the two until either side closes; ``from_*`` are bytes already read past the
    handshake on each side."""
    loop = asyncio.get_running_loop()
    client_closed: asyncio.Future[None] = loop.create_future()
    upstream_closed: asyncio.Future[None] = loop.create_future()
    client.set_protocol(_Half(upstream, client_closed))
    upstream.set_protocol(_Half(client, upstream_closed))
    if from_client:
        upstream.write(from_client)
    if from_upstream:
        client.write(from_upstream)
    client.resume_reading()
    upstream.resume_reading()
    await asyncio.gather(client_closed, upstream_closed)
