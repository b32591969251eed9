"""The reverse proxy itself: streaming with flat memory, hop-by-hop headers both ways, upstream
down (502) and slow (504), WebSocket upgrades, HEAD, and targets passed on byte for byte.

These run on the SQLite backend only: nothing here touches the store beyond one sign-in.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import httpx
import pytest

from tests.gateway import raw
from tests.gateway.conftest import EchoStack, free_port
from tests.gateway.echo import BLOCK, pattern_digest
from tests.gateway.support import COOKIE, HTML, gateway_cookie

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

# 256 MiB each way keeps CI fast; 1 GiB (STREAM_BYTES = 1 << 30) was run by hand, with the same
# bound on memory growth, when this test was written.
STREAM_BYTES = 256 << 20
MAX_RSS_GROWTH = 64 << 20
SLOW_TIMEOUT = 0.5  # BASCULE_GATEWAY_UPSTREAM_TIMEOUT for the slow-upstream test

# Everything under /open is public, so streaming needs no sign-in; /inbox needs a session.
POLICY = """
[upstream]
url = "http://127.0.0.1:9"  # replaced by the test's upstream_url
name = "messaging"
org = "demo"

[[route]]
path = "/open/**"
public = true

[[route]]
path = "/inbox/**"
authenticated = true
"""


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return path


# --- streaming ----------------------------------------------------------------------------------


def _rss() -> int:
    """This process's resident set (the gateway, the upstream and the client all live here)."""
    status = Path("/proc/self/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match, "no VmRSS in /proc/self/status"
    return int(match[1]) * 1024


@contextmanager
def peak_rss() -> Iterator[list[int]]:
    """Sample the resident set every few milliseconds; yields [baseline, peak] (peak filled
    in on exit)."""
    found = [_rss(), 0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            found[1] = max(found[1], _rss())

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield found
    finally:
        done.set()
        sampler.join()
        found[1] = max(found[1], _rss())


def _upload(client: httpx.Client, url: str, size: int) -> httpx.Response:
    def body() -> Iterator[bytes]:
        view = memoryview(BLOCK)
        for _ in range(size // len(BLOCK)):
            for start in range(0, len(BLOCK), 1 << 16):
                yield bytes(view[start : start + (1 << 16)])

    return client.post(url, content=body(), headers={"Content-Length": str(size)})


def _download(client: httpx.Client, url: str) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with client.stream("GET", url) as answer:
        assert answer.status_code == 200
        for chunk in answer.iter_raw(1 << 16):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def test_large_bodies_stream_both_ways_with_flat_memory(
    echo_stack: EchoStack, policy: Path
) -> None:
    with (
        echo_stack.gateway(gateway_policy=policy) as gateway,
        httpx.Client(base_url=gateway, timeout=120) as client,
    ):
        # Warm up first, so buffers and pools that live anyway are in the baseline.
        assert _upload(client, "/open/sink", 4 << 20).json()["bytes"] == 4 << 20
        assert _download(client, f"/open/source?bytes={4 << 20}")[0] == 4 << 20
        with peak_rss() as rss:
            sent = _upload(client, "/open/sink", STREAM_BYTES)
            received = _download(client, f"/open/source?bytes={STREAM_BYTES}")
        assert sent.status_code == 200, sent.text[:300]
        assert sent.json() == {"bytes": STREAM_BYTES, "sha256": pattern_digest(STREAM_BYTES)}
        assert received == (STREAM_BYTES, pattern_digest(STREAM_BYTES))
        growth = rss[1] - rss[0]
        assert growth < MAX_RSS_GROWTH, f"resident memory grew by {growth >> 20} MiB"


def test_chunked_upload_is_passed_on(echo_stack: EchoStack, policy: Path) -> None:
    with echo_stack.gateway(gateway_policy=policy) as gateway:
        chunks = b"4\r\nWiki\r\n6\r\npedia \r\n0\r\n\r\n"
        answer = raw.request(
            gateway, "POST", "/open/sink", [("Transfer-Encoding", "chunked")], chunks
        )
    assert answer.status == 200
    assert json.loads(answer.body) == {
        "bytes": 10,
        "sha256": hashlib.sha256(b"Wikipedia ").hexdigest(),
    }


# --- headers ------------------------------------------------------------------------------------

UPSTREAM_REPLY = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 2\r\n"
    b"Connection: close, X-Up-Hop\r\n"
    b"X-Up-Hop: secret\r\n"
    b"Keep-Alive: timeout=5\r\n"
    b'Proxy-Authenticate: Basic realm="upstream"\r\n'
    b"Trailer: X-Checksum\r\n"
    b"Proxy-Connection: keep-alive\r\n"
    b"X-Kept: yes\r\n"
    b"\r\n"
    b"ok"
)


def test_hop_by_hop_headers_stop_at_the_gateway_both_ways(
    echo_stack: EchoStack, policy: Path
) -> None:
    with (
        raw.RawUpstream(UPSTREAM_REPLY).running() as upstream,
        echo_stack.gateway(gateway_policy=policy, upstream_url=upstream.url) as gateway,
    ):
        answer = raw.request(
            gateway,
            "GET",
            "/open/page",
            [
                ("Connection", "keep-alive, X-Hop"),
                ("X-Hop", "secret"),
                ("Keep-Alive", "timeout=5"),
                ("TE", "trailers"),
                ("Trailer", "X-Checksum"),
                ("Proxy-Authorization", "Basic c2VjcmV0"),
                ("Proxy-Connection", "keep-alive"),
                ("X-Kept", "yes"),
            ],
            close=False,
        )
    assert answer.status == 200 and answer.body == b"ok"
    assert answer.header("X-Kept") == "yes"
    dropped = {"x-up-hop", "keep-alive", "proxy-authenticate", "trailer", "proxy-connection"}
    assert not answer.names() & dropped, answer.headers
    assert "x-up-hop" not in (answer.header("Connection") or "").lower()

    [sent] = upstream.requests
    names = {line.split(b":", 1)[0].strip().lower().decode() for line in sent.split(b"\r\n")[1:]}
    assert "x-kept" in names
    hop = {"x-hop", "keep-alive", "te", "trailer", "proxy-authorization", "proxy-connection"}
    assert not names & hop, sent
    assert b"x-hop" not in sent.lower()


def test_the_upstream_gets_the_clients_headers_and_ours_only(
    echo_stack: EchoStack, policy: Path
) -> None:
    """Nothing the client did not send appears upstream, but for Host (the upstream's own),
    X-Forwarded-* and X-Bascule-*: an invented Accept-Encoding, say, would have the upstream
    compress an answer that the client cannot read."""
    with echo_stack.gateway(gateway_policy=policy) as gateway:
        answer = raw.request(gateway, "POST", "/open/page", [("X-Custom", "1")], b"abc")
    assert answer.status == 200
    names = [k.lower() for k, _ in echo_stack.echo.last_headers()]
    ours = ["host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"]
    identity = ["x-bascule-user", "x-bascule-email", "x-bascule-org", "x-bascule-permissions"]
    expected = [*ours, *identity, "x-bascule-assertion", "x-custom", "content-length"]
    assert sorted(names) == sorted(expected)


def test_upstream_connections_are_pooled(echo_stack: EchoStack, policy: Path) -> None:
    with echo_stack.gateway(gateway_policy=policy) as gateway:
        for _ in range(5):  # five clients, one after another, each on its own connection
            assert raw.request(gateway, "GET", "/open/page").status == 200
    peers = {tuple(entry["peer"]) for entry in echo_stack.echo.seen[-5:]}
    assert len(peers) == 1, peers


# --- the upstream failing ------------------------------------------------------------------------


def test_upstream_down_is_a_502_page(echo_stack: EchoStack, policy: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with echo_stack.gateway(gateway_policy=policy, upstream_url=dead) as gateway:
        program = raw.request(gateway, "GET", "/open/page")
        person = raw.request(gateway, "GET", "/open/page", [*HTML.items()])
    assert program.status == 502
    assert (program.header("Content-Type") or "").startswith("application/problem+json")
    assert json.loads(program.body)["status"] == 502
    assert person.status == 502
    assert b"Application unreachable" in person.body
    assert (person.header("Content-Type") or "").startswith("text/html")


def test_slow_upstream_is_a_504_after_the_configured_timeout(
    echo_stack: EchoStack, policy: Path
) -> None:
    with (
        raw.RawUpstream(None).running() as silent,
        echo_stack.gateway(
            gateway_policy=policy,
            upstream_url=silent.url,
            gateway_upstream_timeout=SLOW_TIMEOUT,
        ) as gateway,
    ):
        started = time.monotonic()
        answer = raw.request(gateway, "GET", "/open/page")
        waited = time.monotonic() - started
        assert silent.requests, "the request never reached the upstream"
    assert answer.status == 504
    assert SLOW_TIMEOUT <= waited < SLOW_TIMEOUT + 5


# --- WebSocket ------------------------------------------------------------------------------------


async def _websocket(url: str, cookie: str | None) -> tuple[str, bytes, str | None] | int:
    """Open a WebSocket through the gateway, send one text and one binary message; what came
    back, or the HTTP status that refused the upgrade."""
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
    async with aiohttp.ClientSession() as http:
        try:
            socket = await http.ws_connect(url, headers=headers, protocols=("chat",))
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        async with socket:
            await socket.send_str("hello")
            text = await socket.receive_str(timeout=10)
            await socket.send_bytes(b"\x00\x01binary")
            data = await socket.receive_bytes(timeout=10)
            return text, data, socket.protocol


def test_websocket_upgrades_are_checked_then_bridged(echo_stack: EchoStack) -> None:
    ws_url = echo_stack.gateway_url.replace("http", "ws", 1)
    assert asyncio.run(_websocket(ws_url + "/inbox", None)) == 401
    member = gateway_cookie(echo_stack, "mia@demo.test", "member")
    assert asyncio.run(_websocket(ws_url + "/settings", member)) == 403
    assert asyncio.run(_websocket(ws_url + "/_static/../settings", member)) == 403
    assert "/settings" not in echo_stack.echo.targets()

    echoed = asyncio.run(_websocket(ws_url + "/inbox?room=1", member))
    assert echoed == ("echo: hello", b"\x00\x01binary", "chat")
    upgrade = echo_stack.echo.seen[-1]
    assert upgrade["target"] == "/inbox?room=1"
    headers = {k.lower(): v for k, v in upgrade["headers"]}
    assert headers["x-bascule-user"] == member.rsplit(".", 1)[1]
    assert headers["x-bascule-assertion"]
    assert COOKIE not in headers.get("cookie", "")


def test_websocket_to_a_down_upstream_is_a_502(echo_stack: EchoStack, policy: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with echo_stack.gateway(gateway_policy=policy, upstream_url=dead) as gateway:
        status = asyncio.run(_websocket(gateway.replace("http", "ws", 1) + "/open/ws", None))
    assert status == 502


# --- HEAD and targets -----------------------------------------------------------------------------


def test_head_is_passed_on_without_a_body(echo_stack: EchoStack, policy: Path) -> None:
    with echo_stack.gateway(gateway_policy=policy) as gateway:
        get = raw.request(gateway, "GET", "/open/page")
        head = raw.exchange(gateway, raw.build("HEAD", "/open/page"))
    assert echo_stack.echo.seen[-1]["method"] == "HEAD"
    status_line, _, rest = head.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 200 OK"
    head_lines, _, after = rest.partition(b"\r\n\r\n")
    assert after == b"", "a body after the head of a HEAD answer"
    lengths = [
        line for line in head_lines.split(b"\r\n") if line.lower().startswith(b"content-length:")
    ]
    assert len(lengths) == 1 and int(lengths[0].split(b":")[1]) > 0, head_lines
    assert get.status == 200 and get.body


QUERIES = [
    "a=%41&b=%2f&c=+&d=%20&e=;&f=&g=a%26b&k=%3F&dup=1&dup=2&empty&=x",
    'u=%C3%A9&raw="<>{}|^`[]&tilde=%7E&plus=%2B&slash=/&q=?',
    "next=%2F%2Fevil.example%2F..%2F&path=/../billing",
]


def test_targets_are_passed_on_exactly(echo_stack: EchoStack, policy: Path) -> None:
    """The query is the upstream's business: byte for byte. The path goes as normalised, and
    in that exact spelling (``%21`` is not re-read as ``!``)."""
    with echo_stack.gateway(gateway_policy=policy) as gateway:
        for query in QUERIES:
            assert raw.request(gateway, "GET", f"/open/q?{query}").status == 200
            assert echo_stack.echo.seen[-1]["target"] == f"/open/q?{query}"
        for path in ["/open/a%21b", "/open/%C3%A9t%C3%A9", "/open/(x)/~y/*/@z:1", "/open/a%2Bb"]:
            assert raw.request(gateway, "GET", path).status == 200, path
            assert echo_stack.echo.seen[-1]["target"] == path
