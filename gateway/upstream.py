"""The reverse proxy's client to the upstream: HTTP/1.1 over a pool of kept-alive connections.

Lean for the same reason as gateway.server: a request is one write of the head (and the body,
streamed with back-pressure), a response head parsed by httptools, and a body handed on as it
arrives. A connection goes back to the pool only when its response was read to the end and
the upstream agreed to keep it; a pooled connection the upstream closed meanwhile is retried
once on a new one (only for a request without a body, which cannot have been half sent).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

from gateway.messages import Body, Headers

CONNECT_SECONDS = 5.0
IDLE_SECONDS = 30.0  # below the usual keep-alive timeouts of servers (nginx 75 s, gunicorn 2 s
# is not kept alive at all), so a pooled connection is rarely one the upstream is closing
MAX_IDLE = 256


class UpstreamError(ConnectionError):
    """The upstream cannot be reached or broke the exchange: 502."""


class BodyError(ConnectionError):
    """The client's body broke off while it was being sent on."""


class _Stale(UpstreamError):
    """A pooled connection was closed by the upstream before it answered anything."""


@dataclass(slots=True, eq=False)
class Answer:
    """The upstream's response: its head, and its body as it arrives."""

    status: int
    headers: Headers
    body: Body
    connection: UpstreamConnection

    def release(self) -> None:
        """Back to the pool if the exchange ended cleanly, else closed."""
        self.connection.release()


class UpstreamConnection(asyncio.Protocol):
    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.used = False  # has answered a request before (a pooled connection)
        self.busy = False  # an exchange is under way
        self.idle_since = 0.0
        self.upgraded: bytes | None = None  # bytes after a 101 answer's head
        self._answer: asyncio.Future[Answer] | None = None
        self._body: Body | None = None
        self._headers: Headers = []
        self._head_only = False
        self._until_close = False  # no length, not chunked: the body ends with the connection
        self._complete = False
        self._keep_alive = False
        self._received = False
        self._writing = True
        self._drained: asyncio.Future[None] | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if not self.busy:  # nothing was asked: an upstream that talks out of turn is dropped
            self.closed = True
            assert self.transport is not None
            self.transport.close()
            return
        self._received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgraded = data[upgrade.args[0] :]
            assert self.transport is not None
            self.transport.pause_reading()  # the tunnel resumes it
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"the upstream's answer is malformed: {exc}"))
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._body is not None and self._until_close and not self._complete:
            self._complete = True
            self._body.finish()
        elif self.used and not self._received:
            self._fail(_Stale("the pooled connection was closed"))
        else:
            self._fail(UpstreamError("the upstream closed the connection"))
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(UpstreamError("the upstream closed the connection"))

    def pause_writing(self) -> None:
        self._writing = False

    def resume_writing(self) -> None:
        self._writing = True
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # --- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200 and status != 101:
            return  # an interim answer (103 Early Hints): the real one follows
        names = {name.lower(): value for name, value in self._headers}
        chunked = "chunked" in names.get("transfer-encoding", "").lower()
        self._until_close = not chunked and "content-length" not in names
        self._body = Body(self._pause_reading, self._resume_reading)
        answer = Answer(status, self._headers, self._body, self)
        if self._head_only or status in (101, 204, 304):
            self._until_close = False
            self._finish()
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(answer)

    def on_body(self, chunk: bytes) -> None:
        if self._body is not None:
            self._body.feed(chunk)

    def on_message_complete(self) -> None:
        if self._body is not None:  # None after an interim answer
            self._keep_alive = self.parser.should_keep_alive()  # llhttp forgets it next
            self._finish()

    def _finish(self) -> None:
        if not self._complete and self._body is not None:
            self._complete = True
            self._body.finish()

    def _fail(self, error: UpstreamError) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(error)
        elif self._body is not None and not self._complete:
            self._body.fail(error)

    def _pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # --- one exchange -------------------------------------------------------------------------

    async def exchange(
        self, head: bytes, body: Body | None, chunked: bool, *, head_only: bool, timeout: float
    ) -> Answer:
        """Send a request; its answer once the head has come, within ``timeout`` seconds."""
        transport = self.transport
        assert transport is not None
        self._answer = self.loop.create_future()
        self._body, self._complete, self._received = None, False, False
        self._keep_alive = False
        self.busy = True
        self._head_only = head_only
        transport.write(head)
        if body is not None:
            try:
                await self._send_body(body, chunked)
            except BaseException:
                self._abandon()
                raise
        timer = self.loop.call_later(timeout, self._expire)
        try:
            return await self._answer
        finally:
            timer.cancel()
            self._answer = None

    async def _send_body(self, body: Body, chunked: bool) -> None:
        transport = self.transport
        assert transport is not None
        while True:
            try:
                chunk = await body.read()
            except ConnectionError as exc:
                raise BodyError(str(exc)) from exc
            if chunked:
                transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
            elif chunk:
                transport.write(chunk)
            if not chunk:
                return
            if not self._writing:
                self._drained = self.loop.create_future()
                await self._drained

    def _abandon(self) -> None:
        """Sending failed: no answer will be read, and none may linger unretrieved."""
        answer, self._answer = self._answer, None
        if answer is not None and answer.done() and not answer.cancelled():
            answer.exception()
        elif answer is not None:
            answer.cancel()
        if self.transport is not None:
            self.transport.close()

    def _expire(self) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(TimeoutError("the upstream did not answer in time"))
            if self.transport is not None:
                self.transport.close()

    def release(self) -> None:
        self.busy = False
        reusable = (
            self._complete
            and not self._head_only
            and not self._until_close
            and self.upgraded is None
            and self._keep_alive
        )
        if reusable and not self.closed:
            self.pool.put_back(self)
        elif self.transport is not None:
            self.transport.close()


class UpstreamPool:
    """Kept-alive connections to the one upstream, most recently used first."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.ssl = ssl.create_default_context() if parts.scheme in ("https", "wss") else None
        self.port = parts.port or (443 if self.ssl else 80)
        self.netloc = parts.netloc
        self._idle: list[UpstreamConnection] = []

    async def send(
        self,
        head: bytes,
        body: Body | None,
        chunked: bool,
        *,
        head_only: bool,
        timeout: float,
        fresh: bool = False,
    ) -> Answer:
        """UpstreamError (502), TimeoutError (504) or BodyError (the client's fault)."""
        connection = None if fresh else self._take()
        if connection is None:
            connection = await self.connect()
        try:
            return await connection.exchange(
                head, body, chunked, head_only=head_only, timeout=timeout
            )
        except _Stale:
            if body is not None:
                raise
            retry = await self.connect()
            return await retry.exchange(head, None, chunked, head_only=head_only, timeout=timeout)

    async def connect(self) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_SECONDS):
                _, connection = await loop.create_connection(
                    lambda: UpstreamConnection(self),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                )
        except OSError as exc:
            raise UpstreamError(f"cannot connect to the upstream: {exc}") from exc
        return connection

    def _take(self) -> UpstreamConnection | None:
        deadline = asyncio.get_running_loop().time() - IDLE_SECONDS
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and connection.idle_since > deadline:
                return connection
            if connection.transport is not None:
                connection.transport.close()
        return None

    def put_back(self, connection: UpstreamConnection) -> None:
        connection.used = True
        connection.idle_since = asyncio.get_running_loop().time()
        if len(self._idle) < MAX_IDLE:
            self._idle.append(connection)
        elif connection.transport is not None:
            connection.transport.close()

    def close(self) -> None:
        for connection in self._idle:
            if connection.transport is not None:
                connection.transport.close()
        self._idle.clear()
