"""The gateway's application factory.

The gateway is not built yet: this answers its health checks and tells a visitor so, so that
`bascule serve` already shows the whole layout. Its hot path need not be Flask (see DESIGN.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

NOT_READY = (
    b"<!doctype html><title>Bascule gateway</title>"
    b"<h1>The Bascule gateway is not configured yet</h1>"
    b"<p>Sign in to the identity provider on port 8000 meanwhile.</p>"
)


def create_app() -> WsgiApp:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in {"/_bascule/healthz", "/_bascule/readyz"}:
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps({"status": "ok"}).encode()]
        start_response("503 Service Unavailable", [("Content-Type", "text/html; charset=utf-8")])
        return [NOT_READY]

    return app
