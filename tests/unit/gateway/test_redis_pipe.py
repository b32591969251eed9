"""The gateway's pipelined MGET (gateway/redis_pipe.py) against a stand-in Redis server."""

from __future__ import annotations

import asyncio

import hiredis
import pytest
import uvloop

from gateway.redis_pipe import RedisPipe
from idp.common.store import StoreUnavailable


class FakeRedis(asyncio.Protocol):
    """Answers SELECT with +OK and MGET with the keys themselves, upper-cased; counts writes."""

    reads = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.reader = hiredis.Reader()

    def data_received(self, data: bytes) -> None:
        FakeRedis.reads += 1
        self.reader.feed(data)
        out = []
        while (command := self.reader.gets()) is not False:
            if command[0].upper() == b"SELECT":
                out.append(b"+OK\r\n")
            else:
                keys = command[1:]
                out.append(b"*%d\r\n" % len(keys))
                out += [b"$%d\r\n%s\r\n" % (len(key), key.upper()) for key in keys]
        self.transport.write(b"".join(out))  # type: ignore[attr-defined]


async def _exercise() -> tuple[list[list[str | None]], int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FakeRedis, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pipe = RedisPipe(f"redis://127.0.0.1:{port}/3")
    try:
        first = await pipe.mget(["a"])  # connects
        alone = await pipe.mget(["b", "c"])  # nothing in flight: sent at once
        FakeRedis.reads = 0
        together = await asyncio.gather(*(pipe.mget([f"k{n}", f"j{n}"]) for n in range(20)))
        return [first, alone, *together], FakeRedis.reads
    finally:
        pipe.close()
        server.close()


def test_replies_reach_their_requests_in_order_alone_or_batched() -> None:
    replies, reads = uvloop.run(_exercise())
    assert replies[0] == ["A"] and replies[1] == ["B", "C"]
    assert replies[2:] == [[f"K{n}", f"J{n}"] for n in range(20)]
    assert reads <= 3  # the concurrent ones went out together, not in 20 writes


def test_an_unreachable_store_fails_closed() -> None:
    async def attempt() -> None:
        await RedisPipe("redis://127.0.0.1:1/0").mget(["a"])

    with pytest.raises(StoreUnavailable):
        uvloop.run(attempt())
