"""HTTP hardening shared by every IdP page: headers, https redirect, and error pages.

Every error becomes a 4xx/5xx page (or RFC 9457 problem JSON for API and JSON callers) with a
plain message: no stack trace, nothing of the input echoed back.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus

from flask import Flask, Response, redirect, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed

from idp.config import Settings
from idp.services.authz import Forbidden
from idp.services.errors import NotFound, ServiceError
from idp.views._helpers import form_targets

log = logging.getLogger("bascule.idp")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'{targets}; frame-ancestors 'none'"
)

MESSAGES = {
    400: "The request could not be understood.",
    403: "You do not have access to this page.",
    404: "There is nothing at this address.",
    405: "This address does not accept that kind of request.",
    413: "The request is too large.",
    415: "This address does not accept that content type.",
    429: "Too many requests. Wait a moment and try again.",
    500: "Something went wrong on our side. It has been logged; please try again.",
    503: "The service is temporarily unavailable. Please try again shortly.",
}


def install_web_security(app: Flask, settings: Settings) -> None:
    @app.before_request
    def require_https() -> Response | None:
        if not settings.is_dev and request.scheme != "https":
            return redirect(request.url.replace("http://", "https://", 1), code=308)  # type: ignore[return-value]
        return None

    @app.after_request
    def security_headers(response: Response) -> Response:
        headers = response.headers
        if "Content-Security-Policy" not in headers:
            # Forms live only on HTML pages; only there may they lead elsewhere.
            html = response.mimetype == "text/html"
            targets = "".join(f" {t}" for t in sorted(form_targets())) if html else ""
            headers["Content-Security-Policy"] = CSP.format(targets=targets)
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "DENY"
        headers["Referrer-Policy"] = "same-origin"
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        if not settings.is_dev:
            headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
        if response.mimetype == "text/html":
            headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(CSRFError)
    def csrf_failed(error: CSRFError) -> tuple[Response | str, int]:
        return error_response(
            400,
            "This form has expired or did not come from this site. "
            "Go back, reload the page and try again.",
        )

    @app.errorhandler(ServiceError)
    def refused(error: ServiceError) -> tuple[Response | str, int]:
        """A rule said no: 403 for a missing permission, 404 for an unknown id, else 400."""
        status = (
            403 if isinstance(error, Forbidden) else 404 if isinstance(error, NotFound) else 400
        )
        return error_response(status, str(error))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response | tuple[Response | str, int]:
        if error.code is None or error.code < 400:
            return error.get_response()
        custom = error.description != type(error).description
        message = error.description if custom else MESSAGES.get(error.code, error.name)
        response = error_response(error.code, message or error.name)
        if isinstance(error.response, Response):  # e.g. Retry-After from a 429
            response[0].headers.extend(error.response.headers)  # type: ignore[union-attr]
        if isinstance(error, MethodNotAllowed) and error.valid_methods:  # RFC 9110 requires it
            response[0].headers["Allow"] = ", ".join(sorted(error.valid_methods))  # type: ignore[union-attr]
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> tuple[Response | str, int]:
        if isinstance(error, HTTPException):
            return http_error(error)  # type: ignore[return-value]
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, MESSAGES[500])

    app.register_error_handler(InternalServerError, unexpected)


def wants_json() -> bool:
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def error_response(status: int, message: str) -> tuple[Response | str, int]:
    """A problem document for machines, a page for people."""
    if wants_json():
        response = Response(
            _problem_json(status, message), status=status, mimetype="application/problem+json"
        )
        return response, status
    page = render_template("idp/error.html", status=status, message=message)
    return Response(page, status=status, mimetype="text/html"), status


def _problem_json(status: int, message: str) -> str:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return json.dumps({"type": "about:blank", "title": title, "status": status, "detail": message})
