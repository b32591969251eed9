"""The reverse proxy: streams both ways, pools upstream connections, cleans headers.

Request and response bodies are copied chunk by chunk (a 1 GiB upload costs a chunk of
memory, not a gigabyte). Hop-by-hop headers, and any header the ``Connection`` header names,
stop here; so does every incoming ``X-Bascule-*`` and ``X-Forwarded-*`` (ours replace them),
and every header that makes some upstream read another path, method or client than the one
the policy judged.
"""

from __future__ import annotations

from collections.abc import Collection

from gateway import pages
from gateway.messages import Headers, Request, Response, Stream
from gateway.upstream import Answer, BodyError, UpstreamError, UpstreamPool

HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection", "host",
        "expect",  # 100-continue is answered here, when the body is wanted
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
# Ours to set: incoming ones are lies. The underscore spelling too: servers that map names to
# CGI variables (older gunicorn, uWSGI, PHP) read X_Bascule_User as X-Bascule-User.
OURS = ("x-bascule-", "x-forwarded-")


def dropped(headers: Headers) -> frozenset[str]:
    """Hop-by-hop names, plus every name the Connection header lists (lower case)."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
    }
    return HOP_BY_HOP | named if named else HOP_BY_HOP


def upstream_headers(
    request: Request,
    identity: dict[str, str],
    client_ip: str,
    forwarded: tuple[str, str],
    private_cookies: Collection[str],
    host: str,
) -> Headers:
    """The headers the upstream gets: the client's, cleaned, then ours. ``forwarded`` is
    the public scheme and host (from our configuration: the Host header is the client's to
    choose, and an upstream building links from X-Forwarded-Host would send them there)."""
    skip = dropped(request.headers) | UNTRUSTED
    out: Headers = [("Host", host)]
    for name, value in request.headers:
        if name in skip or name.replace("_", "-").startswith(OURS):
            continue
        if name == "cookie":
            value = _without_cookies(value, private_cookies)
            if not value:
                continue
        out.append((name, value))
    out += [
        ("X-Forwarded-For", client_ip),
        ("X-Forwarded-Proto", forwarded[0]),
        ("X-Forwarded-Host", forwarded[1]),
    ]
    out += identity.items()
    return out


def _without_cookies(header: str, names: Collection[str]) -> str:
    """The upstream never sees the session cookies of the gateway or the IdP."""
    kept = [part for part in header.split(";") if part.strip().split("=", 1)[0] not in names]
    return ";".join(kept).strip()


def request_head(method: str, target: str, headers: Headers) -> bytes:
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers]
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


async def forward(
    request: Request, pool: UpstreamPool, target: str, headers: Headers, timeout: float
) -> Response:
    """The upstream's answer, streamed; 502 when it cannot be reached, 504 when too slow.

    ``target`` goes out exactly as normalised and judged, never re-encoded.
    """
    chunked = request.has_body and request.header("transfer-encoding") is not None
    if chunked:
        headers = [*headers, ("Transfer-Encoding", "chunked")]
    try:
        answer = await pool.send(
            request_head(request.method, target, headers),
            request.body if request.has_body else None,
            chunked,
            head_only=request.method == "HEAD",
            timeout=timeout,
        )
    except TimeoutError:
        return pages.problem(request, 504, "The application did not answer in time.")
    except BodyError:
        return pages.problem(request, 400, "The request body broke off.")
    except UpstreamError:
        return pages.problem(request, 502, "The application cannot be reached.")
    return relay(answer, timeout)


def relay(answer: Answer, timeout: float) -> Response:
    """The upstream's answer for the client: its headers cleaned, its body as it comes."""
    if answer.body.complete:  # the common small answer: all of it came with the head
        body = answer.body.take_all()
        answer.release()
        return Response(answer.status, answer_headers(answer.headers), body)
    return Response(answer.status, answer_headers(answer.headers), stream=_relay(answer, timeout))


def answer_headers(headers: Headers) -> Headers:
    skip = dropped(headers)
    return [(name, value) for name, value in headers if name.lower() not in skip]


async def _relay(answer: Answer, timeout: float) -> Stream:
    """The body as it arrives; a stall longer than ``timeout`` ends it (and the connection)."""
    try:
        while chunk := await answer.body.read(timeout):
            yield chunk
    finally:
        answer.release()
