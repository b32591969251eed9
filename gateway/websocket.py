"""WebSocket upgrades, checked by the policy like any request, then joined byte for byte."""

from __future__ import annotations

from functools import partial

from gateway import pages, proxy, tunnel
from gateway.messages import Headers, Request, Response
from gateway.upstream import UpstreamError, UpstreamPool


def is_upgrade(request: Request) -> bool:
    return request.upgrade and (request.header("upgrade") or "").lower() == "websocket"


async def bridge(
    request: Request, pool: UpstreamPool, target: str, headers: Headers, timeout: float
) -> Response:
    """Ask the upstream for the upgrade on a connection of its own; on its 101, the client
    gets that answer and the two connections are joined. Any other answer is passed on."""
    upgrade = [*headers, ("Connection", "Upgrade"), ("Upgrade", "websocket")]
    try:
        answer = await pool.send(
            proxy.request_head("GET", target, upgrade),
            None,
            False,
            head_only=False,
            timeout=timeout,
            fresh=True,
        )
    except (UpstreamError, TimeoutError):
        return pages.problem(request, 502, "The application cannot be reached.")
    if answer.status != 101:
        return proxy.relay(answer, timeout)
    upstream = answer.connection.transport
    assert upstream is not None
    kept = [
        *proxy.answer_headers(answer.headers),
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
    ]
    rest = answer.connection.upgraded or b""
    return Response(101, kept, tunnel=partial(tunnel.splice, upstream, rest))
