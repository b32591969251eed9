"""What the gateway asks of the IdP besides OpenID Connect: a user's current permission set
(when its cached copy is stale) and a home for its decisions in the audit log.

Only first-party confidential clients (the gateway) may call, with HTTP Basic credentials.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from idp.extensions import csrf, db
from idp.models import User
from idp.runtime import runtime
from idp.services import audit, orgs, permission_cache
from idp.services.oidc import clients

bp = Blueprint("gateway_api", __name__, url_prefix="/oauth2/gateway")
csrf.exempt(bp)

MAX_EVENTS = 500
GATEWAY_EVENTS = ("gateway.decision", "gateway.summary")


def _refused(status: int, message: str) -> tuple[Response, int]:
    response = jsonify({"error": message})
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="bascule"'
    return response, status


def _client_ok() -> bool:
    auth = request.authorization
    if auth is None or auth.type != "basic" or not auth.username or not auth.password:
        return False
    return clients.authenticate_first_party(auth.username, auth.password) is not None


@bp.post("/permissions")
def permissions() -> Response | tuple[Response, int]:
    if not _client_ok():
        return _refused(401, "client authentication failed")
    user_id = request.form.get("user_id", "")[:36]
    org = orgs.find(request.form.get("org", "")[:63])
    if org is None:
        return _refused(404, "no such organisation")
    user = db.session.get(User, user_id) if user_id else None
    held = (
        permission_cache.current(user, org.id, runtime().store) if user is not None else frozenset()
    )
    return jsonify({"org_id": org.id, "permissions": sorted(held)})


@bp.post("/audit")
def record_decisions() -> Response | tuple[Response, int]:
    if not _client_ok():
        return _refused(401, "client authentication failed")
    body = request.get_json(silent=True)
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list) or len(events) > MAX_EVENTS:
        return _refused(400, f"expected {{'events': [...]}} with at most {MAX_EVENTS} events")
    for entry in events:
        if not isinstance(entry, dict) or entry.get("event") not in GATEWAY_EVENTS:
            return _refused(400, f"events must be one of {', '.join(GATEWAY_EVENTS)}")
    for entry in events:
        _record(entry)
    return jsonify({"recorded": len(events)})


def _record(entry: dict[str, Any]) -> None:
    when = entry.get("time")
    audit.record(
        str(entry["event"]),
        outcome="failure" if entry.get("outcome") == "failure" else "success",
        actor=audit.Actor(_text(entry.get("actor_id"), 36), _text(entry.get("actor_email"), 254)),
        org_id=_text(entry.get("org_id"), 36),
        target=_text(entry.get("target"), 254),
        origin=audit.Origin(_text(entry.get("ip"), 45), _text(entry.get("user_agent"), 512)),
        details=entry.get("details") if isinstance(entry.get("details"), dict) else {},
        now=datetime.fromisoformat(when).timestamp() if isinstance(when, str) else None,
    )


def _text(value: Any, limit: int) -> str | None:
    return str(value)[:limit] if value not in (None, "") else None
