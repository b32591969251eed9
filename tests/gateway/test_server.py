"""The gateway's own HTTP/1.1 server (gateway/server.py) under attack, and under pipelining.

Each request smuggling payload hides a second request, ``GET /hidden``, where a lenient
parser would find it: the server must refuse the carrier (400 and hang up), and the handler
must never see ``/hidden``. These run against the bare server with a recording handler, so a
refusal here is the parser's and the server's, not the policy's.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import uvloop

from gateway.messages import Request, Response, text
from gateway.server import MAX_HEADERS, MAX_TARGET, HttpServer
from tests.gateway import raw

HIDDEN = b"GET /hidden HTTP/1.1\r\nHost: x\r\n\r\n"


class Recorder:
    """Answers every request with its method and target; reads the body only of /read."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, request: Request) -> Response:
        target = request.target.decode("latin-1")
        self.seen.append(f"{request.method} {target}")
        body = b""
        if target == "/read":
            body = await request.body.collect(1 << 20) or b""
        return text(200, f"{request.method} {target} {len(body)}")


@pytest.fixture
def server() -> Iterator[tuple[str, Recorder]]:
    loop = uvloop.new_event_loop()
    recorder = Recorder()
    http = HttpServer(recorder)
    listener = socket.create_server(("127.0.0.1", 0))
    loop.run_until_complete(http.listen(listener))
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", recorder
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(http.close(grace=1))
        loop.close()


def _head(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


SMUGGLING = {
    "CL.TE": _head(["POST /a HTTP/1.1", "Host: x", f"Content-Length: {5 + len(HIDDEN)}",
                    "Transfer-Encoding: chunked"]) + b"0\r\n\r\n" + HIDDEN,
    "TE.CL": _head(["POST /a HTTP/1.1", "Host: x", "Transfer-Encoding: chunked",
                    "Content-Length: 4"]) + b"0\r\n\r\n" + HIDDEN,
    "two lengths": _head(["POST /a HTTP/1.1", "Host: x", "Content-Length: 5",
                          "Content-Length: 0"]) + b"0\r\n\r\n" + HIDDEN,
    "same length twice": _head(["POST /a HTTP/1.1", "Host: x", "Content-Length: 0",
                                "Content-Length: 0"]) + HIDDEN,
    "length list": _head(["POST /a HTTP/1.1", "Host: x", "Content-Length: 0, 5"]) + HIDDEN,
    "signed length": _head(["POST /a HTTP/1.1", "Host: x", "Content-Length: +0"]) + HIDDEN,
    "chunked then identity": _head(["POST /a HTTP/1.1", "Host: x", "Transfer-Encoding: chunked",
                                    "Transfer-Encoding: identity"]) + b"0\r\n\r\n" + HIDDEN,
    "chunked twice": _head(["POST /a HTTP/1.1", "Host: x",
                            "Transfer-Encoding: chunked, chunked"]) + b"0\r\n\r\n" + HIDDEN,
    "coding before chunked": _head(["POST /a HTTP/1.1", "Host: x",
                                    "Transfer-Encoding: gzip, chunked"]) + b"0\r\n\r\n" + HIDDEN,
    "unknown coding": _head(["POST /a HTTP/1.1", "Host: x",
                             "Transfer-Encoding: xchunked"]) + b"0\r\n\r\n" + HIDDEN,
    "chunked in HTTP/1.0": _head(["POST /a HTTP/1.0", "Host: x",
                                  "Transfer-Encoding: chunked"]) + b"0\r\n\r\n" + HIDDEN,
    "space before the colon": _head(["POST /a HTTP/1.1", "Host: x",
                                     "Transfer-Encoding : chunked"]) + b"0\r\n\r\n" + HIDDEN,
    "obs-fold": _head(["POST /a HTTP/1.1", "Host: x", "X-Folded: a",
                       " Transfer-Encoding: chunked"]) + b"0\r\n\r\n" + HIDDEN,
    "bare LF": b"POST /a HTTP/1.1\nHost: x\nContent-Length: 0\n\n" + HIDDEN,
    "bare CR in a value": b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\rGET /hidden\r\n\r\n",
    "NUL in a value": _head(["GET /a HTTP/1.1", "Host: x", "X-A: a\x00b"]) + HIDDEN,
    "upgrade with a body": _head(["POST /a HTTP/1.1", "Host: x", "Connection: Upgrade",
                                  "Upgrade: h2c", f"Content-Length: {len(HIDDEN)}"]) + HIDDEN,
}  # fmt: skip


# Broken chunk framing shows only once the body is read, after the handler may have answered:
# then that answer is the last one on the connection.
BROKEN_CHUNKS = {
    "chunk size with a prefix": _head(["POST /a HTTP/1.1", "Host: x",
                                       "Transfer-Encoding: chunked"]) + b"0x0\r\n\r\n" + HIDDEN,
    "chunk size ended by LF": _head(["POST /a HTTP/1.1", "Host: x",
                                     "Transfer-Encoding: chunked"]) + b"0\n\r\n" + HIDDEN,
}  # fmt: skip


@pytest.mark.parametrize("payload", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_request_smuggling_is_refused(server: tuple[str, Recorder], payload: bytes) -> None:
    url, recorder = server
    answered = raw.exchange(url, payload)  # everything until the server hangs up
    statuses = [
        line.split(b" ")[1] for line in answered.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")
    ]
    assert statuses and statuses[-1] == b"400", answered[:300]
    assert b"Connection: close" in answered
    assert "GET /hidden" not in recorder.seen, recorder.seen


@pytest.mark.parametrize("payload", BROKEN_CHUNKS.values(), ids=BROKEN_CHUNKS.keys())
def test_broken_chunks_end_the_connection(server: tuple[str, Recorder], payload: bytes) -> None:
    url, recorder = server
    answered = raw.exchange(url, payload)
    assert answered.count(b"HTTP/1.1 ") == 1 and b"Connection: close" in answered, answered
    assert recorder.seen == ["POST /a"]


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (_head(["GET /a HTTP/1.1"]), 400),  # no Host
        (_head(["GET /a HTTP/1.1", "Host: x", "Host: y"]), 400),
        (_head(["GET /a HTTP/2.0", "Host: x"]), 505),
        (b"GET /a\r\n\r\n", 505),  # HTTP/0.9
        (_head(["GET /a HTTP/1.1", "Host: x", "X-Tab\tName: a"]), 400),
        (_head([f"GET /{'a' * MAX_TARGET} HTTP/1.1", "Host: x"]), 414),
        (_head(["GET /a HTTP/1.1", "Host: x", f"X-Big: {'a' * 9000}"]), 431),
        (_head(["GET /a HTTP/1.1", "Host: x"] + [f"X-{n}: a" for n in range(MAX_HEADERS)]), 431),
    ],
    ids=["no host", "two hosts", "HTTP/2.0", "HTTP/0.9", "tab in a name", "long target",
         "large header", "many headers"],
)  # fmt: skip
def test_malformed_heads_are_refused(
    server: tuple[str, Recorder], payload: bytes, status: int
) -> None:
    url, recorder = server
    answered = raw.exchange(url, payload)
    assert answered.startswith(b"HTTP/1.1 %d " % status), answered[:200]
    assert recorder.seen == []


def test_pipelined_requests_are_answered_in_order(server: tuple[str, Recorder]) -> None:
    url, recorder = server
    body = b"x" * 10
    pipelined = (
        raw.build("GET", "/one", close=False)
        + raw.build("POST", "/read", body=body, close=False)
        + raw.build("POST", "/unread", body=body, close=False)  # not read: skipped, not parsed
        + raw.build("GET", "/four", close=False)
    )
    answers = raw.send_many(url, pipelined, 4)
    assert [a.body for a in answers] == [b"GET /one 0", b"POST /read 10", b"POST /unread 0",
                                         b"GET /four 0"]  # fmt: skip
    assert recorder.seen == ["GET /one", "POST /read", "POST /unread", "GET /four"]


def test_a_chunked_body_cannot_hide_a_request(server: tuple[str, Recorder]) -> None:
    """A chunk's data that looks like a request stays data; the next request is the real one."""
    url, recorder = server
    inner = b"GET /hidden HTTP/1.1\r\nHost: x\r\n\r\n"
    chunked = raw.build(
        "POST", "/read", [("Transfer-Encoding", "chunked")],
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(inner), inner), close=False,
    )  # fmt: skip
    answers = raw.send_many(url, chunked + raw.build("GET", "/after"), 2)
    assert [a.body for a in answers] == [b"POST /read %d" % len(inner), b"GET /after 0"]
    assert recorder.seen == ["POST /read", "GET /after"]


def test_http_1_0_closes_unless_kept_alive(server: tuple[str, Recorder]) -> None:
    url, _ = server
    closed = raw.exchange(url, b"GET /a HTTP/1.0\r\n\r\n")
    assert closed.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in closed
    [kept] = raw.send_many(url, b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1)
    assert kept.header("Connection") == "keep-alive"


def test_a_burst_of_connections_is_served_and_spread_over_the_workers() -> None:
    """Two servers (as two gunicorn workers) on one listening socket each take connections one
    at a time: a burst of new connections is served entirely, and not all by one of them."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    port = listener.getsockname()[1]
    loops, servers, threads, recorders = [], [], [], []
    for _ in range(2):
        loop = uvloop.new_event_loop()
        recorder = Recorder()
        http = HttpServer(recorder)
        loop.run_until_complete(http.listen(listener.dup()))
        loops.append(loop), servers.append(http), recorders.append(recorder)
        threads.append(threading.Thread(target=loop.run_forever))
        threads[-1].start()
    try:
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(40)]
        for number, client in enumerate(clients):
            client.sendall(f"GET /{number} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        for number, client in enumerate(clients):
            assert client.recv(4096).startswith(b"HTTP/1.1 200 OK"), number
            client.close()
        counts = [len(recorder.seen) for recorder in recorders]
        assert sum(counts) == 40 and min(counts) > 0, counts
    finally:
        for loop, http, thread in zip(loops, servers, threads, strict=True):
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.run_until_complete(http.close(grace=1))
            loop.close()
        listener.close()
