"""The gateway's own answers: a small HTML page for people, problem+json for programs."""

from __future__ import annotations

import html
import json

from gateway.messages import Request, Response, text

TITLES = {
    400: "Bad request",
    401: "Sign-in required",
    403: "Not allowed",
    404: "Not found",
    502: "Application unreachable",
    503: "Temporarily unavailable",
    504: "Application too slow",
}
STYLESHEET = "/_bascule/style.css"
STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;color:#1d2430;background:#f4f6f9;margin:0}"
    "main{max-width:34rem;margin:12vh auto;padding:2rem 2.5rem;background:#fff;"
    "border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.08)}"
    "h1{font-size:1.5rem;margin-top:0}.links{color:#6b7380}a{color:#2454c5}"
)
SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; style-src 'self'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-store"),
)


def is_browser(request: Request) -> bool:
    """A person's navigation (GET of a page), who can be sent to sign in and back."""
    return request.method in {"GET", "HEAD"} and wants_html(request)


def wants_html(request: Request) -> bool:
    """A page for people (a refused form post too), JSON for programs."""
    return "text/html" in (request.header("accept") or "")


def problem(request: Request, status: int, message: str) -> Response:
    title = TITLES.get(status, "Error")
    if wants_html(request):
        body = (
            "<!doctype html><html lang=en><meta charset=utf-8>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="stylesheet" href="{STYLESHEET}"><title>{title} · Bascule</title>'
            f"<main><h1>{title}</h1><p>{html.escape(message)}</p>"
            '<p class="links"><a href="/">Back to the start</a> · '
            '<a href="/_bascule/logout">Sign out</a></p></main>'
        )
        return text(status, body, "text/html; charset=utf-8", SECURITY_HEADERS)
    detail = json.dumps({"title": title, "status": status, "detail": message})
    return text(status, detail, "application/problem+json; charset=utf-8", SECURITY_HEADERS)


def stylesheet() -> Response:
    return text(200, STYLE, "text/css; charset=utf-8", [("Cache-Control", "public, max-age=3600")])


def redirect(location: str) -> Response:
    return Response(302, [("Location", location), *SECURITY_HEADERS])
