"""The gateway's own answers: a small HTML page for people, problem+json for programs."""

from __future__ import annotations

import html
import json

from aiohttp import web

TITLES = {
    400: "Bad request",
    401: "Sign-in required",
    403: "Not allowed",
    404: "Not found",
    502: "Application unreachable",
    503: "Temporarily unavailable",
    504: "Application too slow",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def is_browser(request: web.Request) -> bool:
    """A person's navigation (GET of a page), who can be sent to sign in and back."""
    return request.method in {"GET", "HEAD"} and "text/html" in request.headers.get("Accept", "")


def problem(request: web.Request, status: int, message: str) -> web.Response:
    title = TITLES.get(status, "Error")
    if is_browser(request):
        body = (
            "<!doctype html><html lang=en><meta charset=utf-8>"
            f"<title>{title} · Bascule</title><h1>{title}</h1><p>{html.escape(message)}</p>"
        )
        return web.Response(
            status=status, text=body, content_type="text/html", headers=SECURITY_HEADERS
        )
    return web.Response(
        status=status,
        text=json.dumps({"title": title, "status": status, "detail": message}),
        content_type="application/problem+json",
        headers=SECURITY_HEADERS,
    )


def redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location, **SECURITY_HEADERS})
