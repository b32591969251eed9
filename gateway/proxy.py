"""The reverse proxy: streams both ways, pools upstream connections, cleans headers.

Request and response bodies are copied chunk by chunk (a 1 GiB upload costs a chunk of
memory, not a gigabyte). Hop-by-hop headers, and any header the ``Connection`` header names,
stop here; so does every incoming ``X-Bascule-*`` and ``X-Forwarded-*`` (ours replace them),
and every header that makes some upstream read another path, method or client than the one
the policy judged.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway import pages

CHUNK = 64 * 1024
HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection", "host",
    }
)  # fmt: skip
# Never passed on, whatever the policy decided. Symfony, IIS and some rewrite modules route by
# X-Original-URL/X-Rewrite-URL, many frameworks take the method from an override header, and
# apps behind "trusted" proxies read the client from Forwarded or X-Real-IP: a request the
# policy allowed as ``GET /inbox`` would otherwise be served as ``DELETE /billing``.
UNTRUSTED = frozenset(
    {
        "forwarded", "x-real-ip", "x-original-url", "x-rewrite-url", "x-original-uri",
        "x-original-method", "x-http-method-override", "x-http-method", "x-method-override",
    }
)  # fmt: skip
# aiohttp adds these when they are missing; the upstream must get the client's or none. An
# Accept-Encoding the client never sent would have the upstream compress an answer the client
# cannot read (it is passed on as it comes, never decompressed).
CLIENT_ONLY = ("Accept", "Accept-Encoding", "Content-Type", "User-Agent")
# Ours to set: incoming ones are lies. The underscore spelling too: servers that map names to
# CGI variables (older gunicorn, uWSGI, PHP) read X_Bascule_User as X-Bascule-User.
OURS = ("x-bascule-", "x-forwarded-")


def _dropped(headers: CIMultiDictProxy[str]) -> frozenset[str]:
    """Hop-by-hop names, plus every name the Connection header lists."""
    named = {
        token.strip().lower()
        for value in headers.getall("Connection", [])
        for token in value.split(",")
    }
    return HOP_BY_HOP | named


def upstream_headers(
    request: web.Request,
    identity: dict[str, str],
    client_ip: str,
    public_url: str,
    private_cookies: Collection[str],
) -> CIMultiDict[str]:
    dropped = _dropped(request.headers) | UNTRUSTED
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        lower = name.lower()
        if lower in dropped or lower.replace("_", "-").startswith(OURS):
            continue
        if lower == "cookie":
            value = _without_cookies(value, private_cookies)
            if not value:
                continue
        out.add(name, value)
    # Host and scheme from our configuration: the Host header is the client's to choose, and
    # an upstream building links from X-Forwarded-Host would send them to the client's site.
    public = urlsplit(public_url)
    out["X-Forwarded-For"] = client_ip
    out["X-Forwarded-Proto"] = public.scheme
    out["X-Forwarded-Host"] = public.netloc
    out.update(identity)
    return out


def _without_cookies(header: str, names: Collection[str]) -> str:
    """The upstream never sees the session cookies of the gateway or the IdP."""
    kept = [part for part in header.split(";") if part.strip().split("=", 1)[0] not in names]
    return ";".join(kept).strip()


async def forward(
    request: web.Request,
    http: aiohttp.ClientSession,
    url: URL,
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
            skip_auto_headers=CLIENT_ONLY,
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
