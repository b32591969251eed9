"""What the second-factor views share: their service context, the pending sign-in in the
session, one-time display of recovery codes, the QR code, JSON answers."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import qrcode
import qrcode.image.svg
from flask import Response, jsonify, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from idp.common.sealing import SealingError
from idp.extensions import db
from idp.models import Organisation, User, WebAuthnCredential
from idp.runtime import runtime
from idp.services import login_state, mfa, mfa_keys, org_settings
from idp.services.login_state import Pending
from idp.services.sessions import Limits
from idp.views._helpers import origin, server_session

CHALLENGE_KEY = "webauthn_challenge"  # the handle of the live WebAuthn challenge
TOTP_KEY = "totp_enrolment"  # the sealed seed shown on the enrolment page
CODES_KEY = "fresh_recovery_codes"  # sealed codes waiting to be shown once


def mfa_context() -> mfa.Context:
    rt = runtime()
    return mfa.Context(rt.settings, rt.store, rt.keyring, origin(), rt.clock())


# --- the pending sign-in ---------------------------------------------------------------------


def pending(stage: str) -> Pending | None:
    return login_state.load(server_session().get(login_state.SESSION_KEY), stage, runtime().clock())


def save_pending(state: Pending) -> None:
    server_session()[login_state.SESSION_KEY] = state.as_dict()


def clear_pending() -> None:
    """The one way out of a pending sign-in: everything it left in the session goes."""
    session = server_session()
    for key in (login_state.SESSION_KEY, CHALLENGE_KEY, TOTP_KEY):
        session.pop(key, None)


def finish_sign_in(uid: str, org_id: str | None, amr: list[str]) -> None:
    """Sign in for real (a new session id) once every required factor has passed."""
    clear_pending()
    server_session().sign_in(uid, org_id, amr, runtime().clock(), org_limits(org_id))


def org_limits(org_id: str | None) -> Limits | None:
    """The organisation's session limits, which every kind of sign-in into it gets."""
    org = db.session.get(Organisation, org_id) if org_id else None
    return org_settings.session_limits(org, runtime().settings) if org else None


# --- WebAuthn challenge handle ---------------------------------------------------------------


def keep_challenge(handle: str) -> None:
    server_session()[CHALLENGE_KEY] = handle


def take_challenge() -> str | None:
    value = server_session().pop(CHALLENGE_KEY, None)
    return value if isinstance(value, str) else None


def json_body() -> dict[str, Any]:
    """The request's JSON object (an empty one when absent or not an object)."""
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def register_key(user: User) -> tuple[WebAuthnCredential, list[str] | None]:
    """Keeps the key the browser created for the live challenge (enrolment from the account page
    or during sign-in): the key and, on a first factor, new recovery codes. Raises
    ``ServiceError`` when the service refuses it."""
    body = json_body()
    return mfa_keys.register(
        mfa_context(), user, take_challenge(), body.get("credential"), str(body.get("name") or "")
    )


def json_error(message: str, status: int = 400, **extra: Any) -> tuple[Response, int]:
    return jsonify({"error": message, **extra}), status


# --- recovery codes shown once ---------------------------------------------------------------


def stash_codes(user: User, codes: list[str], next_url: str) -> None:
    """Keep fresh codes for the next page view only, sealed: the store never sees them clear."""
    body = json.dumps({"codes": codes, "next": next_url}).encode()
    server_session()[CODES_KEY] = runtime().keyring.seal(body, f"recovery-display:{user.id}")


def pop_codes(user: User) -> tuple[list[str], str] | None:
    sealed = server_session().pop(CODES_KEY, None)
    if not isinstance(sealed, str):
        return None
    try:
        body = json.loads(runtime().keyring.unseal(sealed, f"recovery-display:{user.id}"))
    except (SealingError, ValueError):
        return None
    return list(body["codes"]), str(body["next"])


# --- TOTP enrolment --------------------------------------------------------------------------


def qr_data_uri(text: str) -> str:
    """The QR code as an SVG data URI: an <img> the CSP allows, drawn without any image library."""
    image = qrcode.make(
        text,
        image_factory=qrcode.image.svg.SvgPathFillImage,
        error_correction=qrcode.constants.ERROR_CORRECT_M,
        box_size=10,
        border=4,
    )
    buffer = io.BytesIO()
    image.save(buffer)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def grouped(secret: str) -> str:
    """``ABCD EFGH …``: easier to type into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def reauth_url(next_url: str) -> str:
    return url_for("mfa_login.reauth", next=next_url)


def reauth_needed(next_url: str) -> BaseResponse | None:
    """A redirect to confirm the password again when the session's sign-in is older than
    ``mfa.REAUTH_SECONDS`` (a stolen, long-lived session cannot change credentials), else None.
    """
    try:
        mfa.require_recent(server_session().record.auth_time, runtime().clock())
    except mfa.ReauthRequired:
        return redirect_303(reauth_url(next_url))
    return None


def redirect_303(location: str) -> BaseResponse:
    response = Response(status=303)
    response.headers["Location"] = location
    return response
