"""One Redis connection per worker carrying the MGETs of every request in flight, pipelined.

The hot path's only store operation is a read of a few keys. redis-py's asyncio pipeline cost
a quarter of a forward-auth's time (building command objects, its connection pool, its
response callbacks); here the commands of all requests waiting at the same moment go out in
one write, packed by hiredis, and the replies, parsed by hiredis, resolve the waiting requests
in order. Any failure (no connection, an error reply, no answer within ``TIMEOUT_SECONDS``)
fails every request waiting on the connection with StoreUnavailable: the gateway fails closed.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis.connection import parse_url

from idp.common.store import StoreUnavailable

TIMEOUT_SECONDS = 2.0
Reply = list[str | None]


def _pack(*words: str) -> bytes:
    return hiredis.pack_command(words)  # type: ignore[arg-type]  # its stub says a 1-tuple


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(encoding="utf-8")
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def idle(self) -> bool:
        """Open, with no reply outstanding."""
        return not self.waiting and not self.closed

    def send(self, commands: list[bytes], futures: Sequence[asyncio.Future[Any]]) -> None:
        assert self.transport is not None
        self.waiting.extend(futures)
        self.transport.write(b"".join(commands))
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(TIMEOUT_SECONDS, self._expire, len(self.waiting))

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                future = self.waiting.popleft()
                if isinstance(reply, hiredis.ReplyError):
                    future.set_exception(StoreUnavailable(f"redis: {reply}"))
                elif not future.done():
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:
            self._fail(f"redis: unreadable reply ({exc})")
            return
        if self._timer is not None and not self.waiting:
            self._timer.cancel()
            self._timer = None

    def _expire(self, outstanding: int) -> None:
        """Replies are read in order: if the oldest request is still waiting, Redis is stuck."""
        self._timer = None
        if self.waiting:
            self._fail(f"redis: no answer in {TIMEOUT_SECONDS:g}s ({outstanding} waiting)")

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"redis: connection lost ({exc or 'closed'})")

    def _fail(self, message: str) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(StoreUnavailable(message))
        if self.transport is not None:
            self.transport.close()


class RedisPipe:
    """MGET over one connection, opened on first use and again after a failure."""

    def __init__(self, url: str) -> None:
        params = parse_url(url)
        self._path: str | None = params.get("path")
        self._host: str = params.get("host", "127.0.0.1")
        self._port: int = params.get("port", 6379)
        self._ssl = ssl.create_default_context() if url.startswith("rediss:") else None
        self._setup = [_pack("SELECT", str(params.get("db", 0)))]
        if params.get("password"):
            user = [params["username"]] if params.get("username") else []
            self._setup.insert(0, _pack("AUTH", *user, params["password"]))
        self._connection: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None
        self._batch: list[bytes] = []
        self._futures: list[asyncio.Future[Any]] = []

    async def mget(self, keys: Sequence[str]) -> Reply:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        command = _pack("MGET", *keys)
        connection = self._connection
        if not self._futures and connection is not None and connection.idle():
            # Nothing in flight and nothing batched (low load): waiting a loop iteration for
            # company would only add latency. Under load replies are outstanding, and the
            # commands of the requests arriving meanwhile go out together, as below.
            connection.send([command], (future,))
            return await future
        self._batch.append(command)
        self._futures.append(future)
        if len(self._futures) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        commands, futures = self._batch, self._futures
        self._batch, self._futures = [], []
        connection = self._connection
        if connection is not None and not connection.closed:
            connection.send(commands, futures)
            return
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        self._connecting.add_done_callback(
            lambda done: self._send_when_connected(done, commands, futures)
        )

    def _send_when_connected(
        self, done: asyncio.Task[_Connection], commands: list[bytes], futures: list[Any]
    ) -> None:
        self._connecting = None
        error = done.exception()
        if error is not None:
            for future in futures:
                if not future.done():
                    future.set_exception(StoreUnavailable(f"redis: cannot connect ({error})"))
            return
        self._connection = done.result()
        self._connection.send(commands, futures)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(TIMEOUT_SECONDS):
            if self._path:
                _, connection = await loop.create_unix_connection(_Connection, self._path)
            else:
                _, connection = await loop.create_connection(
                    _Connection, self._host, self._port, ssl=self._ssl
                )
            setup = [loop.create_future() for _ in self._setup]
            connection.send(self._setup, setup)
            try:
                await asyncio.gather(*setup)
            except BaseException:
                connection.closed = True
                assert connection.transport is not None
                connection.transport.close()
                raise
        return connection

    def close(self) -> None:
        if self._connection is not None and self._connection.transport is not None:
            self._connection.transport.close()
