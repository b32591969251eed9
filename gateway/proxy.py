"""The reverse proxy: streams both ways, pools upstream connections, cleans headers.

Request and response bodies are copied chunk by chunk (a 1 GiB upload costs a chunk of
memory, not a gigabyte). Hop-by-hop headers, and any header the ``Connection`` header names,
stop here; so does every incoming ``X-Bascule-*`` and ``X-Forwarded-*`` (ours replace them).
"""

from __future__ import annotations

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from gateway import pages

CHUNK = 64 * 1024
HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection", "host",
    }
)  # fmt: skip


def _dropped(headers: CIMultiDictProxy[str]) -> frozenset[str]:
    """Hop-by-hop names, plus every name the Connection header lists."""
    named = {
        token.strip().lower()
        for value in headers.getall("Connection", [])
        for token in value.split(",")
    }
    return HOP_BY_HOP | named


def upstream_headers(
    request: web.Request, identity: dict[str, str], client_ip: str, cookie_name: str
) -> CIMultiDict[str]:
    dropped = _dropped(request.headers)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        lower = name.lower()
        if lower in dropped or lower.startswith(("x-bascule-", "x-forwarded-")):
            continue
        if lower == "cookie":
            value = _without_cookie(value, cookie_name)
            if not value:
                continue
        out.add(name, value)
    out["X-Forwarded-For"] = client_ip
    out["X-Forwarded-Proto"] = request.scheme
    out["X-Forwarded-Host"] = request.host
    out.update(identity)
    return out


def _without_cookie(header: str, name: str) -> str:
    """The upstream never sees the gateway's own session cookie."""
    kept = [part for part in header.split(";") if part.strip().split("=", 1)[0] != name]
    return ";".join(kept).strip()


async def forward(
    request: web.Request,
    http: aiohttp.ClientSession,
    url: str,
    headers: CIMultiDict[str],
    timeout: float,
) -> web.StreamResponse:
    body = request.content if request.body_exists else None
    try:
        upstream = await http.request(
            request.method,
            url,
            headers=headers,
            data=body,
            allow_redirects=False,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=timeout),
        )
    except TimeoutError:
        return pages.problem(request, 504, "The application did not answer in time.")
    except aiohttp.ClientError:
        return pages.problem(request, 502, "The application cannot be reached.")
    try:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        dropped = _dropped(upstream.headers)
        for name, value in upstream.headers.items():
            if name.lower() not in dropped:
                response.headers.add(name, value)
        await response.prepare(request)
        # A failure past this point cannot change the status any more: aiohttp closes the
        # connection, and the client sees a truncated body rather than a wrong one.
        async for chunk in upstream.content.iter_chunked(CHUNK):
            await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        upstream.release()
