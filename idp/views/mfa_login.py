"""The second step of signing in, passkey sign-in, forced enrolment and re-authentication.

Every view here starts from the pending sign-in in the server session (see
``services/login_state``) and refuses to act without a live one at the right stage.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template, request, url_for
from werkzeug.wrappers import Response

from idp.common.redirects import safe_next
from idp.extensions import db
from idp.models import User
from idp.runtime import runtime
from idp.services import login_state, mfa, mfa_keys, totp, users, webauthn_service
from idp.services.errors import ServiceError
from idp.services.login_state import Pending
from idp.views import _mfa
from idp.views._helpers import current_user, field, redirect_to
from idp.views._mfa import json_body, json_error, mfa_context

bp = Blueprint("mfa_login", __name__)

EXPIRED = "Your sign-in has expired. Sign in again."


def _user(state: Pending) -> User | None:
    user = db.session.get(User, state.uid)
    return user if user is not None and user.is_active else None


def _start_over() -> Response:
    _mfa.clear_pending()
    return redirect_to("auth.login")


# --- second factor after the password --------------------------------------------------------


@bp.get("/login/2fa")
def second_factor_form() -> str | Response:
    state = _mfa.pending(login_state.SECOND_FACTOR)
    user = _user(state) if state else None
    if state is None or user is None:
        return _start_over()
    return render_template("idp/mfa/second_factor.html", methods=state.methods, email=user.email)


@bp.post("/login/2fa")
def second_factor() -> tuple[str, int] | Response:
    state = _mfa.pending(login_state.SECOND_FACTOR)
    user = _user(state) if state else None
    if state is None or user is None or not {"totp", "recovery"} & set(state.methods):
        return _start_over()
    code = field("code", 64, required=False)
    try:
        used = mfa.use_code(mfa_context(), user, code)
    except mfa.TooManyCodes as exc:
        _mfa.clear_pending()
        page = render_template("idp/login.html", error=str(exc), email=user.email, next="")
        return Response(page, 429, {"Retry-After": str(exc.retry_after)})
    except mfa.WrongCode as exc:
        if login_state.record_failure(state):
            _mfa.clear_pending()
            page = render_template(
                "idp/login.html",
                error="Too many wrong codes. Sign in again.",
                email=user.email,
                next=state.next_url,
            )
            return page, 401
        _mfa.save_pending(state)
        page = render_template(
            "idp/mfa/second_factor.html", methods=state.methods, email=user.email, error=str(exc)
        )
        return page, 401
    _mfa.finish_sign_in(user.id, state.org_id, mfa.login_amr(state.amr, "otp"))
    if used.method == "recovery":
        return redirect_to("mfa_account.overview", recovery_left=used.recovery_left)
    return _mfa.redirect_303(state.next_url)


@bp.post("/login/2fa/webauthn/options")
def second_factor_options() -> tuple[Response, int] | Response:
    state = _mfa.pending(login_state.SECOND_FACTOR)
    user = _user(state) if state else None
    if state is None or user is None or "webauthn" not in state.methods:
        return json_error(EXPIRED, 401, redirect=url_for("auth.login"))
    options, handle = mfa_keys.login_options(mfa_context(), user)
    _mfa.keep_challenge(handle)
    return jsonify({"publicKey": options})


@bp.post("/login/2fa/webauthn/verify")
def second_factor_verify() -> tuple[Response, int] | Response:
    state = _mfa.pending(login_state.SECOND_FACTOR)
    user = _user(state) if state else None
    if state is None or user is None or "webauthn" not in state.methods:
        return json_error(EXPIRED, 401, redirect=url_for("auth.login"))
    handle = _mfa.take_challenge()
    try:
        assertion = mfa_keys.authenticate(
            mfa_context(), handle, json_body().get("credential"), user
        )
    except mfa.TooManyCodes as exc:
        _mfa.clear_pending()
        return json_error(str(exc), 429, redirect=url_for("auth.login"))
    except ServiceError as exc:
        if login_state.record_failure(state):
            _mfa.clear_pending()
            return json_error("Too many failed attempts. Sign in again.", 401)
        _mfa.save_pending(state)
        return json_error(str(exc), 400)
    amr = mfa.login_amr(state.amr, webauthn_service.amr_value(assertion.credential))
    _mfa.finish_sign_in(user.id, state.org_id, amr)
    return jsonify({"redirect": state.next_url})


# --- passkey sign-in, no password ------------------------------------------------------------


@bp.get("/login/passkey")
def passkey_form() -> str | Response:
    next_url = safe_next(request.args.get("next"), runtime().settings.issuer)
    return render_template("idp/mfa/passkey.html", next=next_url)


@bp.post("/login/passkey/options")
def passkey_options() -> Response:
    options, handle = mfa_keys.login_options(mfa_context(), None)
    _mfa.keep_challenge(handle)
    return jsonify({"publicKey": options})


@bp.post("/login/passkey/verify")
def passkey_verify() -> tuple[Response, int] | Response:
    body = json_body()
    next_url = safe_next(str(body.get("next") or ""), runtime().settings.issuer)
    handle = _mfa.take_challenge()
    try:
        assertion = mfa_keys.authenticate(mfa_context(), handle, body.get("credential"), None)
    except ServiceError as exc:
        return json_error(str(exc), 400)
    user = db.session.get(User, assertion.credential.user_id)
    if user is None or not user.is_active:
        return json_error("This security key could not sign you in.", 400)
    # User verification was required: the key proved possession and the PIN or biometric,
    # two factors in one gesture.
    amr = [webauthn_service.amr_value(assertion.credential), "mfa"]
    _mfa.finish_sign_in(user.id, users.default_org_id(user.id), amr)
    return jsonify({"redirect": next_url})


# --- enrolment required by the organisation --------------------------------------------------


def _enrolment() -> tuple[Pending, User] | None:
    state = _mfa.pending(login_state.ENROL)
    user = _user(state) if state else None
    return (state, user) if state and user else None


@bp.get("/login/2fa/setup")
def setup_form() -> str | Response:
    found = _enrolment()
    if found is None:
        return _start_over()
    return _setup_page(*found)


def _setup_page(state: Pending, user: User, error: str | None = None) -> str:
    session = _mfa.server_session()
    enrolment = mfa.begin_totp(mfa_context(), user, session.get(_mfa.TOTP_KEY))
    session[_mfa.TOTP_KEY] = enrolment.sealed
    uri = totp.provisioning_uri(enrolment.secret, user.email, runtime().settings.issuer)
    return render_template(
        "idp/mfa/setup.html",
        email=user.email,
        qr=_mfa.qr_data_uri(uri),
        uri=uri,
        secret=_mfa.grouped(enrolment.secret),
        error=error,
    )


@bp.post("/login/2fa/setup/totp")
def setup_totp() -> tuple[str, int] | Response:
    found = _enrolment()
    if found is None:
        return _start_over()
    state, user = found
    ctx = mfa_context()
    session = _mfa.server_session()
    enrolment = mfa.begin_totp(ctx, user, session.get(_mfa.TOTP_KEY))
    try:
        codes = mfa.confirm_totp(ctx, user, enrolment, field("code", 64, required=False))
    except ServiceError as exc:
        return _setup_page(state, user, error=str(exc)), 400
    _mfa.finish_sign_in(user.id, state.org_id, mfa.login_amr(state.amr, "otp"))
    if not codes:
        return _mfa.redirect_303(state.next_url)
    _mfa.stash_codes(user, codes, state.next_url)
    return redirect_to("mfa_account.show_recovery_codes")


@bp.post("/login/2fa/setup/webauthn/options")
def setup_webauthn_options() -> tuple[Response, int] | Response:
    found = _enrolment()
    if found is None:
        return json_error(EXPIRED, 401, redirect=url_for("auth.login"))
    # The password was typed moments ago: that is the recent authentication.
    options, handle = mfa_keys.registration_options(mfa_context(), found[1], runtime().clock())
    _mfa.keep_challenge(handle)
    return jsonify({"publicKey": options})


@bp.post("/login/2fa/setup/webauthn/verify")
def setup_webauthn_verify() -> tuple[Response, int] | Response:
    found = _enrolment()
    if found is None:
        return json_error(EXPIRED, 401, redirect=url_for("auth.login"))
    state, user = found
    try:
        credential, codes = _mfa.register_key(user)
    except ServiceError as exc:
        return json_error(str(exc), 400)
    amr = mfa.login_amr(state.amr, webauthn_service.amr_value(credential))
    _mfa.finish_sign_in(user.id, state.org_id, amr)
    if not codes:
        return jsonify({"redirect": state.next_url})
    _mfa.stash_codes(user, codes, state.next_url)
    return jsonify({"redirect": url_for("mfa_account.show_recovery_codes")})


# --- re-authentication -----------------------------------------------------------------------


@bp.get("/login/reauth")
def reauth() -> str | Response:
    """Confirm it is you: the password again (then the second factor) refreshes auth_time."""
    next_url = safe_next(request.args.get("next"), runtime().settings.issuer)
    user = current_user()
    if user is None:
        return redirect_to("auth.login", next=next_url)
    return render_template("idp/mfa/reauth.html", user=user, email=user.email, next=next_url)
