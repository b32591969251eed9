"""Requests and responses as the gateway's HTTP/1.1 server and upstream client carry them.

Kept to what the hot paths need: headers stay a list of (lower-case name, value) pairs as they
arrived, the cookie and the query are read only when asked for, and bodies stream through
:class:`Body` with back-pressure. Header values are *wire strings*: the bytes as sent, decoded
as latin-1, so whatever a client or the upstream wrote goes on byte for byte; text of our own
that may hold non-ASCII (an email address) goes through :func:`wire` first.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl

Headers = list[tuple[str, str]]
Stream = AsyncGenerator[bytes, None]
# Given the client's transport and the bytes it sent after the upgrade request.
Tunnel = Callable[[asyncio.Transport, bytes], Awaitable[None]]

HIGH_WATER = 256 * 1024  # bytes of body buffered before the sender is paused
LOW_WATER = 64 * 1024
REASONS = {status.value: status.phrase for status in HTTPStatus}


def wire(text: str) -> str:
    """Text as a header value: its UTF-8 bytes, one character each (as the server writes)."""
    return text if text.isascii() else text.encode().decode("latin-1")


class Body:
    """A body as it arrives, read once by one consumer. While more than ``HIGH_WATER`` bytes
    wait, the sender's transport is paused, so a slow reader never fills the gateway's memory
    (a 1 GiB upload costs a few chunks)."""

    __slots__ = (
        "_chunks", "_discarding", "_done", "_error", "_pause", "_paused", "_resume", "_size",
        "_waiter", "dropped", "on_demand",
    )  # fmt: skip

    def __init__(self, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        self.on_demand: Callable[[], None] | None = None  # called at the first wait (100-continue)
        self.dropped = 0  # bytes that arrived after discard()
        self._discarding = False
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._pause, self._resume = pause, resume

    @property
    def complete(self) -> bool:
        """Everything was received (it may not all have been read)."""
        return self._done

    def feed(self, chunk: bytes) -> None:
        if self._discarding:
            self.dropped += len(chunk)
            return
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size > HIGH_WATER and not self._paused:
            self._paused = True
            self._pause()
        self._wake()

    def finish(self) -> None:
        self._done = True
        self._wake()

    def discard(self) -> None:
        """Nobody will read the rest: it is dropped as it arrives (counted in ``dropped``)."""
        self._discarding = True
        self.dropped += self._size
        self._chunks.clear()
        self._size = 0
        if self._paused:
            self._paused = False
            self._resume()

    def fail(self, error: BaseException) -> None:
        """The sender went away or broke the framing: the reader gets ``error``."""
        if not self._done:
            self._error = error
            self._done = True
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read(self, timeout: float | None = None) -> bytes:
        """The next chunk; ``b""`` at the end. TimeoutError when nothing came for ``timeout``."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            if self.on_demand is not None:
                self.on_demand()
                self.on_demand = None
            loop = asyncio.get_running_loop()
            self._waiter = loop.create_future()
            timer = None if timeout is None else loop.call_later(timeout, self._expire)
            try:
                await self._waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        chunk = self._chunks.popleft()
        self._size -= len(chunk)
        if self._paused and self._size < LOW_WATER:
            self._paused = False
            self._resume()
        return chunk

    def take_all(self) -> bytes:
        """What a ``complete`` body holds, at once."""
        assert self._done and self._error is None
        chunks, self._chunks, self._size = self._chunks, deque(), 0
        return b"".join(chunks)

    async def collect(self, limit: int) -> bytes | None:
        """The whole body, or None when it is longer than ``limit`` bytes."""
        chunks, size = [], 0
        while chunk := await self.read():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def _expire(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(TimeoutError("no data in time"))


@dataclass(slots=True, eq=False)
class Request:
    method: str
    target: bytes  # the raw request target, as sent
    version: str  # "1.0" or "1.1"
    headers: Headers  # lower-case names, wire values, in order
    peer: str
    body: Body
    keep_alive: bool
    has_body: bool  # a Content-Length above zero, or chunked
    upgrade: bool = False  # Connection: upgrade with an Upgrade header
    _cookies: dict[str, str] | None = None

    def header(self, name: str) -> str | None:
        """The first value of ``name`` (lower case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    def cookie(self, name: str) -> str | None:
        if self._cookies is None:
            self._cookies = {}
            for header in self.header_values("cookie"):
                for part in header.split(";"):
                    key, _, value = part.strip().partition("=")
                    self._cookies.setdefault(key, value.strip('"'))
        return self._cookies.get(name)

    def query(self) -> dict[str, str]:
        """The query's first value of each name (decoded)."""
        raw = self.target.decode("latin-1").partition("?")[2]
        found: dict[str, str] = {}
        for key, value in parse_qsl(raw, keep_blank_values=True):
            found.setdefault(key, value)
        return found


@dataclass(slots=True)
class Response:
    """An answer: a ``body`` of bytes, or a ``stream`` (framed by the Content-Length among
    ``headers``, else chunked), or, with 101, a ``tunnel`` that takes the connection over."""

    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    stream: Stream | None = None
    tunnel: Tunnel | None = None


def text(
    status: int,
    body: str,
    content_type: str = "text/plain; charset=utf-8",
    headers: Sequence[tuple[str, str]] = (),
) -> Response:
    return Response(status, [("Content-Type", content_type), *headers], body.encode())


def set_cookie(
    name: str,
    value: str,
    *,
    path: str,
    max_age: int | None = None,
    secure: bool,
    httponly: bool = True,
    samesite: str = "Lax",
) -> tuple[str, str]:
    """A Set-Cookie header; values are our own tokens (URL-safe), never quoted."""
    parts = [f"{name}={value}", f"Path={path}", f"SameSite={samesite}"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if secure:
        parts.append("Secure")
    if httponly:
        parts.append("HttpOnly")
    return ("Set-Cookie", "; ".join(parts))


def delete_cookie(name: str, *, path: str, secure: bool) -> tuple[str, str]:
    expired = set_cookie(name, '""', path=path, max_age=0, secure=secure)[1]
    return ("Set-Cookie", expired + "; Expires=Thu, 01 Jan 1970 00:00:00 GMT")
