"""The gateway's HTTP/1.1 server: an asyncio protocol over httptools (llhttp).

Why its own: with aiohttp's server, its request and response machinery took about 80% of a
forward-auth's time (bench/README.md). This serves exactly what the gateway needs: keep-alive,
pipelined requests answered in order, bodies streamed both ways with back-pressure, and an
upgrade handed over to a tunnel.

Strict, because a proxy that frames a request differently from the upstream lets a second
request be smuggled past the policy. llhttp itself refuses repeated or malformed
Content-Length, Content-Length with Transfer-Encoding, obs-fold line folding, bare LF, and
invalid characters in names and values. On top of that this refuses a Transfer-Encoding other
than exactly ``chunked``, any Transfer-Encoding in HTTP/1.0, versions other than 1.0 and 1.1,
a missing or repeated Host in HTTP/1.1, an upgrade request with a body, and heads over the
limits below. A refusal answers 400 (431, 414, 505) and closes: what follows it can no longer
be framed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any, cast

import httptools

from gateway.messages import REASONS, Body, Request, Response, Stream, text, wire

MAX_TARGET = 8190
MAX_FIELD = 8190  # bytes in one header line
MAX_HEADERS = 100
MAX_PIPELINED = 16  # requests read ahead of the one being answered
MAX_DISCARD = 1 << 20  # unread request body dropped after the answer before hanging up
KEEPALIVE_SECONDS = 75.0
SWEEP_SECONDS = 5.0
ACCEPT_TURN_SECONDS = 0.0002  # a busy worker's pause between accepts (see listen)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
NO_BODY_STATUSES = frozenset({101, 204, 304})

Handler = Callable[[Request], Awaitable[Response]]
AccessLog = Callable[[Request, int], None]

log = logging.getLogger("bascule.gateway")


class Refused(Exception):
    """A request the server will not read on: answered with ``status``, then closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Date:
    """The Date header, formatted once a second."""

    second = 0
    value = ""

    @classmethod
    def now(cls) -> str:
        second = int(time.time())
        if second != cls.second:
            cls.second, cls.value = second, formatdate(second, usegmt=True)
        return cls.value


class HttpServer:
    """One handler behind any number of listening sockets; idle connections time out."""

    def __init__(self, handler: Handler, access_log: AccessLog | None = None) -> None:
        self.handler = handler
        self.access_log = access_log
        self.connections: set[Connection] = set()
        self._listeners: list[socket.socket] = []
        self._accepting: set[asyncio.Future[Any]] = set()
        self._sweeper: asyncio.TimerHandle | None = None

    async def listen(self, sock: socket.socket) -> None:
        """Serve connections accepted on ``sock``, one per wake-up of this worker's loop.

        Every worker waits on the same listening socket. An event loop that accepted every
        pending connection at once (asyncio's and uvloop's servers do) let whichever worker
        woke first take a whole burst of new connections (0.84/0.16 seen): the kept-alive
        connections then stay uneven, and the busier worker queues requests the other could
        answer. Taking one at a time, the workers take turns, and a busy one takes fewer."""
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._accept, sock)
        self._listeners.append(sock)
        if self._sweeper is None:
            self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep)

    def _accept(self, sock: socket.socket) -> None:
        try:
            accepted, _ = sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another worker took it, or the client gave up first
        except OSError as exc:  # out of file descriptors, or alike: the backlog waits
            log.warning("cannot accept a connection: %s", exc)
            return
        loop = asyncio.get_running_loop()
        if self.connections or self._accepting:
            # Serving others already: a short turn for the other workers, woken by the same
            # connection, before this one takes the next.
            loop.remove_reader(sock.fileno())
            loop.call_later(ACCEPT_TURN_SECONDS, self._rearm, sock)
        accepted.setblocking(False)
        if accepted.family in (socket.AF_INET, socket.AF_INET6):
            accepted.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = asyncio.ensure_future(
            loop.connect_accepted_socket(lambda: Connection(self), accepted)
        )
        self._accepting.add(task)
        task.add_done_callback(self._accepted)

    def _rearm(self, sock: socket.socket) -> None:
        if sock in self._listeners:  # not closed meanwhile
            asyncio.get_running_loop().add_reader(sock.fileno(), self._accept, sock)

    def _accepted(self, task: asyncio.Future[Any]) -> None:
        self._accepting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("an accepted connection could not be served: %s", task.exception())

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() - KEEPALIVE_SECONDS
        for connection in list(self.connections):
            connection.close_if_idle(since=deadline)
        self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep)

    async def close(self, grace: float) -> None:
        """Stop accepting, let requests in flight finish for up to ``grace`` seconds."""
        loop = asyncio.get_running_loop()
        for listener in self._listeners:
            loop.remove_reader(listener.fileno())
            listener.close()  # this process's descriptor: gunicorn's other workers keep theirs
        self._listeners.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
        deadline = time.monotonic() + grace
        while self.connections and time.monotonic() < deadline:
            for connection in list(self.connections):
                connection.close_if_idle(since=float("inf"))
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            connection.abort()


class Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them in order, one at a time."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.queue: deque[Request] = deque()  # parsed, waiting for the one being answered
        self.current: Request | None = None  # being answered
        self.answering: asyncio.Task[None] | None = None
        self.parsing: Request | None = None  # whose body the parser is reading
        self.idle_since = self.loop.time()
        self.refusal: Refused | None = None  # to answer once the requests before it are done
        self.upgraded: bytearray | None = None  # bytes after an upgrade request's head
        self._target = b""
        self._headers: list[tuple[str, str]] = []
        self._reading = True
        self._writing = True
        self._drained: asyncio.Future[None] | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else ""
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.upgraded is not None:
            self.upgraded += data
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgraded = bytearray(data[upgrade.args[0] :])
            self._pause_reading()
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._refuse(cause if isinstance(cause, Refused) else Refused(400, "Bad request."))
        except httptools.HttpParserError as exc:
            self._refuse(Refused(400, f"Bad request: {exc}."))

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        gone = ConnectionResetError("the client closed the connection")
        for request in (self.parsing, self.current, *self.queue):
            if request is not None:
                request.body.fail(gone)
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(gone)

    def pause_writing(self) -> None:
        self._writing = False

    def resume_writing(self) -> None:
        self._writing = True
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # --- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._target = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._target += url
        if len(self._target) > MAX_TARGET:
            raise Refused(414, "The request target is too long.")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self._headers) >= MAX_HEADERS or len(name) + len(value) > MAX_FIELD:
            raise Refused(431, "Too many or too large request headers.")
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        request = self._request()
        self.parsing = request
        if self.current is None:
            self._start(request)
        else:
            self.queue.append(request)
            if len(self.queue) >= MAX_PIPELINED:
                self._pause_reading()

    def on_body(self, chunk: bytes) -> None:
        assert self.parsing is not None
        body = self.parsing.body
        body.feed(chunk)
        if body.dropped > MAX_DISCARD and self.transport is not None:
            self.transport.close()

    def on_message_complete(self) -> None:
        if self.parsing is not None:
            self.parsing.body.finish()
            self.parsing = None

    def _request(self) -> Request:
        parser, headers = self.parser, self._headers
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise Refused(505, "Only HTTP/1.1 and HTTP/1.0 are served.")
        hosts, chunked, length, expects = 0, False, 0, False
        for name, value in headers:
            if name == "host":
                hosts += 1
            elif name == "transfer-encoding":
                if value.strip().lower() != "chunked" or version == "1.0" or chunked:
                    raise Refused(400, "Only 'Transfer-Encoding: chunked' is accepted.")
                chunked = True
            elif name == "content-length":
                length = int(value)  # llhttp took only digits, and only once
            elif name == "expect":
                expects = value.lower() == "100-continue"
        if hosts > 1 or (hosts == 0 and version == "1.1"):
            raise Refused(400, "A request needs exactly one Host header.")
        has_body = chunked or length > 0
        if parser.should_upgrade() and has_body:
            raise Refused(400, "An upgrade request cannot have a body.")
        request = Request(
            method=parser.get_method().decode("ascii"),
            target=self._target,
            version=version,
            headers=headers,
            peer=self.peer,
            body=Body(self._pause_reading, self._resume_reading),
            keep_alive=parser.should_keep_alive(),
            has_body=has_body,
            upgrade=parser.should_upgrade(),
        )
        if not has_body:
            request.body.finish()
        elif expects:
            request.body.on_demand = self._send_continue
        return request

    # --- answering ----------------------------------------------------------------------------

    def _start(self, request: Request) -> None:
        self.current = request
        self.answering = self.loop.create_task(self._answer(request))  # kept: tasks are weak

    async def _answer(self, request: Request) -> None:
        try:
            response = await self.server.handler(request)
        except Exception:
            log.exception("error answering %s %r", request.method, request.target)
            response = text(500, "Internal error.")
        keep = await self._send(request, response)
        if self.server.access_log is not None:
            self.server.access_log(request, response.status)
        if response.tunnel is not None:
            return  # the tunnel owned the connection, and closed it
        self._next(request, keep)

    def _next(self, request: Request, keep: bool) -> None:
        self.current = None
        transport = self.transport
        assert transport is not None
        if not keep or self.upgraded is not None or transport.is_closing():
            transport.close()
            return
        if not request.body.complete:
            request.body.discard()  # read on and dropped, up to MAX_DISCARD
        if self.queue:
            self._start(self.queue.popleft())
            self._resume_reading()
        elif self.refusal is not None:
            self._write_refusal(self.refusal)
        else:
            self.idle_since = self.loop.time()

    async def _send(self, request: Request, response: Response) -> bool:
        """Write the answer; whether the connection may carry another request."""
        transport = self.transport
        assert transport is not None
        status, stream = response.status, response.stream
        keep = request.keep_alive and self.refusal is None
        has_length = any(name.lower() == "content-length" for name, _ in response.headers)
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\nDate: {_Date.now()}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in response.headers]
        bodiless = status in NO_BODY_STATUSES or status < 200
        chunked = False
        if stream is None:
            if not has_length and not bodiless:
                lines.append(f"Content-Length: {len(response.body)}\r\n")
        elif not has_length and not bodiless and request.method != "HEAD":
            chunked = request.version == "1.1"
            if chunked:
                lines.append("Transfer-Encoding: chunked\r\n")
            else:
                keep = False  # the end of the body is the end of the connection
        if status != 101:
            if not keep:
                lines.append("Connection: close\r\n")
            elif request.version == "1.0":
                lines.append("Connection: keep-alive\r\n")
        lines.append("\r\n")
        head = "".join(lines)
        try:
            data = head.encode("latin-1")
        except UnicodeEncodeError:  # text of ours beyond latin-1 (a return URL): as UTF-8
            data = wire(head).encode("latin-1")
        if request.method == "HEAD" or bodiless:
            transport.write(data)
            if stream is not None:
                await stream.aclose()
        elif stream is None:
            transport.write(data + response.body)
        else:
            transport.write(data)
            keep = await self._stream(stream, chunked) and keep
        if response.tunnel is not None:
            self.server.connections.discard(self)
            await response.tunnel(transport, bytes(self.upgraded or b""))
        return keep

    async def _stream(self, stream: Stream, chunked: bool) -> bool:
        """Copy a streamed body to the client; False when it broke off (then we hang up)."""
        transport = self.transport
        assert transport is not None
        try:
            async for chunk in stream:
                if chunked:
                    transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                else:
                    transport.write(chunk)
                if not self._writing:
                    await self._drain()
            if chunked:
                transport.write(b"0\r\n\r\n")
            return True
        except (ConnectionError, TimeoutError) as exc:
            # The status is already sent: a truncated body (and a closed connection) is the
            # only honest answer left.
            log.info("response body broken off: %s", exc)
            return False
        finally:
            await stream.aclose()

    async def _drain(self) -> None:
        self._drained = self.loop.create_future()
        try:
            await self._drained
        finally:
            self._drained = None

    def _send_continue(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(CONTINUE)

    def _refuse(self, refusal: Refused) -> None:
        self._pause_reading()
        if self.parsing is not None:
            self.parsing.body.fail(ConnectionError(str(refusal)))
        if self.current is None and not self.queue:
            self._write_refusal(refusal)
        else:
            self.refusal = refusal  # answered after those before it, in order

    def _write_refusal(self, refusal: Refused) -> None:
        assert self.transport is not None
        response = text(refusal.status, f"{refusal}\n")
        head = (
            f"HTTP/1.1 {refusal.status} {REASONS.get(refusal.status, 'Bad Request')}\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(response.body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        self.transport.write(head.encode("latin-1") + response.body)
        self.transport.close()

    # --- flow control and closing -------------------------------------------------------------

    def _pause_reading(self) -> None:
        if self._reading and self.transport is not None and not self.transport.is_closing():
            self._reading = False
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        blocked = len(self.queue) >= MAX_PIPELINED or self.upgraded is not None
        if not self._reading and not blocked and self.transport is not None:
            self._reading = True
            self.transport.resume_reading()

    def close_if_idle(self, since: float) -> None:
        """Hang up if no request is in progress and none came after ``since``."""
        idle = self.current is None and not self.queue and self.parsing is None
        if idle and self.idle_since < since and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
