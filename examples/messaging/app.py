"""``create_app``: configuration, store, verifier, pages, error pages and headers, in that order.

Run under gunicorn (``examples.messaging.app:create_app('http://localhost:8000',
'http://localhost:8080')``) or, for development, with ``python -m examples.messaging``.
The app keeps no sessions and sets no cookies: who is calling comes from the gateway's assertion
on every request.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from flask import Flask, Response, render_template
from werkzeug.exceptions import HTTPException

from examples.messaging.assertion import AssertionVerifier, KeyCache, jwks_url
from examples.messaging.csrf import CsrfGuard
from examples.messaging.store import Store
from examples.messaging.views import GUARD_MARK, Context, blueprint

PUBLIC_ENDPOINTS = frozenset({"static", "healthz"})  # as public as in the gateway's policy
STATIC_PATH = "/_static"  # the demo policy lets /_static/** through without a session
MAX_REQUEST_BYTES = 64 * 1024  # forms only; the longest holds a 2,000-character message

# No inline script or style anywhere, so the policy can be this strict: an injected <script> or
# style attribute does nothing, and no other site may frame the pages (clickjacking).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none';"
    " object-src 'none'"
)


def create_app(
    issuer: str,
    gateway_url: str,
    audience: str = "messaging",
    data_path: Path | str | None = None,
) -> Flask:
    """The messaging app for the IdP at ``issuer`` and the gateway at ``gateway_url``.

    ``audience`` is this upstream's name in the gateway policy (the assertion's ``aud``);
    ``data_path`` is the SQLite file, by default ``messaging.db`` in the instance folder (a
    string works too, since gunicorn passes only literals to a factory).
    """
    app = Flask(__name__, static_url_path=STATIC_PATH)
    app.config.update(MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES)

    store = Store(Path(data_path) if data_path else Path(app.instance_path) / "messaging.db")
    store.create()
    verifier = AssertionVerifier(KeyCache(jwks_url(issuer)), gateway_url, audience)
    context = Context(verifier, CsrfGuard(store.secret(), audience), store, gateway_url)
    app.register_blueprint(blueprint(context))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        store.ping()
        return {"status": "ok"}

    _refuse_unguarded_views(app)
    app.add_template_filter(_when, "when")
    app.register_error_handler(HTTPException, _error_page)
    app.after_request(_security_headers)
    return app


def _refuse_unguarded_views(app: Flask) -> None:
    """Fail at start, not in production, when a page was added without the guard."""
    unguarded = sorted(
        endpoint
        for endpoint, view in app.view_functions.items()
        if endpoint not in PUBLIC_ENDPOINTS and not hasattr(view, GUARD_MARK)
    )
    if unguarded:
        raise RuntimeError(f"views without the assertion guard: {', '.join(unguarded)}")


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _error_page(exc: HTTPException) -> tuple[str, int]:
    """Werkzeug's errors (404, 405, 413 …) in the app's own page, without the header bar."""
    status = exc.code or 500
    title = exc.name or "Error"
    return render_template("error.html", caller=None, title=title, kind="http"), status


def _security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if "Cache-Control" not in response.headers:  # static files say no-cache, and keep it
        # Pages name people and hold their messages: no shared or back-button cache keeps them.
        response.headers["Cache-Control"] = "no-store"
    return response
