"""Raw HTTP/1.1 over a socket, both as a client and as a canned upstream.

httpx (like requests) normalises what it sends: it resolves ``/../``, re-encodes the path,
folds header case and refuses odd header names. A bypass payload must reach the gateway byte
for byte as an attacker would send it, so these tests write the request line and headers
themselves, and read the answer with a parser just strict enough for the gateway's replies.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

Header = tuple[str, str]
TIMEOUT = 10.0


@dataclass
class RawResponse:
    status: int
    headers: list[Header]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of ``name`` (any case), or None."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}


def build(
    method: str,
    target: str,
    headers: Sequence[Header] = (),
    body: bytes = b"",
    *,
    host: str = "gateway.test",
    close: bool = True,
) -> bytes:
    """A request exactly as written: nothing is encoded, resolved or re-cased."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers]
    framed = {name.lower() for name, _ in headers} & {"content-length", "transfer-encoding"}
    if body and not framed:
        lines.append(f"Content-Length: {len(body)}")
    if close and not any(name.lower() == "connection" for name, _ in headers):
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def send(url: str, data: bytes, *, head: bool = False, timeout: float = TIMEOUT) -> RawResponse:
    """Send ``data`` to the server of ``url`` and read one response (no body for ``head``)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_response(_Reader(sock), head=head)


def send_many(url: str, data: bytes, count: int, timeout: float = TIMEOUT) -> list[RawResponse]:
    """Send ``data`` (several requests, pipelined) and read ``count`` responses in order."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(data)
        reader = _Reader(sock)
        return [read_response(reader) for _ in range(count)]


def request(
    url: str,
    method: str,
    target: str,
    headers: Sequence[Header] = (),
    body: bytes = b"",
    *,
    host: str | None = None,
    close: bool = True,
) -> RawResponse:
    """``build`` then ``send`` to the server at ``url`` (``Host`` its address unless given)."""
    data = build(method, target, headers, body, host=host or urlsplit(url).netloc, close=close)
    return send(url, data, head=method.upper() == "HEAD")


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._fill():
                raise ConnectionError(f"connection closed before {marker!r}: {self.buffer!r:.300}")
        found, _, self.buffer = self.buffer.partition(marker)
        return found

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise ConnectionError("connection closed inside a body")
        found, self.buffer = self.buffer[:size], self.buffer[size:]
        return found

    def rest(self) -> bytes:
        while self._fill():
            pass
        found, self.buffer = self.buffer, b""
        return found


def read_response(reader: _Reader, *, head: bool = False) -> RawResponse:
    while True:  # interim 1xx answers (100 Continue) come before the real one
        status, headers = _read_head(reader)
        if not 100 <= status < 200 or status == 101:
            break
    response = RawResponse(status, headers, b"")
    if head or status in (101, 204, 304):
        return response
    if (response.header("Transfer-Encoding") or "").lower() == "chunked":
        response.body = _read_chunked(reader)
    elif response.header("Content-Length") is not None:
        response.body = reader.exactly(int(response.header("Content-Length") or 0))
    else:
        response.body = reader.rest()
    return response


def _read_head(reader: _Reader) -> tuple[int, list[Header]]:
    head = reader.until(b"\r\n\r\n").decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in head[1:])]
    return status, headers


def _read_chunked(reader: _Reader) -> bytes:
    body = b""
    while True:
        size = int(reader.until(b"\r\n").split(b";")[0], 16)
        if size == 0:
            reader.until(b"\r\n")  # no trailers from these servers: the empty line
            return body
        body += reader.exactly(size)
        reader.until(b"\r\n")


class RawUpstream:
    """An upstream on loopback that answers every request with ``reply`` (raw bytes), or,
    with ``reply=None``, holds the connection without answering until it is closed.

    ``requests`` keeps each request head as received, for tests to look at.
    """

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.requests: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._stop = threading.Event()
        self._clients: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._clients.append(client)
            client.settimeout(TIMEOUT)
            reader = _Reader(client)
            try:
                self.requests.append(reader.until(b"\r\n\r\n"))
                if self.reply is not None:
                    client.sendall(self.reply)
                    client.close()
            except OSError:
                client.close()

    @contextmanager
    def running(self) -> Iterator[RawUpstream]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(5)
            for client in self._clients:
                client.close()
            self._listener.close()


def exchange(url: str, data: bytes, timeout: float = TIMEOUT) -> bytes:
    """Send ``data`` and return every byte the server sends until it closes the connection
    (for answers that must have nothing after their head, such as HEAD)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(data)
        return _Reader(sock).rest()
