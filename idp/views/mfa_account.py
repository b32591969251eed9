"""The signed-in user's second factors: set up, rename, remove, recovery codes (/account/2fa)."""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template, request, url_for
from werkzeug.wrappers import Response

from idp.models import User
from idp.runtime import runtime
from idp.services import mfa, mfa_keys, mfa_policy, totp, webauthn_service
from idp.services.errors import ServiceError
from idp.views import _mfa
from idp.views._helpers import field, login_required, redirect_to, server_session
from idp.views._mfa import json_error, mfa_context

bp = Blueprint("mfa_account", __name__, url_prefix="/account/2fa")


@bp.app_template_global("factor_status")
def factor_status(user: User) -> mfa.Status:
    """For the account page's summary (templates/idp/_factors_summary.html)."""
    return mfa.status(user)


def _auth_time() -> float | None:
    return server_session().record.auth_time


def _reauth(next_endpoint: str = "mfa_account.overview") -> Response:
    return _mfa.redirect_303(_mfa.reauth_url(url_for(next_endpoint)))


@bp.get("")
@login_required
def overview(user: User) -> str:
    return _overview(user)


def _overview(user: User, error: str | None = None, notice: str | None = None) -> str:
    left = request.args.get("recovery_left", "")
    return render_template(
        "idp/mfa/overview.html",
        user=user,
        status=mfa.status(user),
        requirement=mfa_policy.requirement(user, server_session().record.amr, runtime().clock()),
        recovery_left=int(left) if left.isascii() and left.isdigit() and len(left) < 3 else None,
        notice=notice or _notice(request.args.get("done", "")),
        error=error,
    )


NOTICES = {
    "totp-added": "Your authenticator app is set up.",
    "key-added": "Your security key is registered.",
    "totp-removed": "The authenticator app was removed.",
    "key-removed": "The security key was removed.",
    "key-renamed": "The security key was renamed.",
}


def _notice(done: str) -> str | None:
    return NOTICES.get(done)


# --- authenticator app -----------------------------------------------------------------------


@bp.get("/totp")
@login_required
def totp_form(user: User) -> str | Response:
    try:
        mfa.require_recent(_auth_time(), runtime().clock())
    except mfa.ReauthRequired:
        return _reauth("mfa_account.totp_form")
    return _totp_page(user)


def _totp_page(user: User, error: str | None = None) -> str:
    session = server_session()
    try:
        enrolment = mfa.begin_totp(mfa_context(), user, session.get(_mfa.TOTP_KEY))
    except ServiceError as exc:
        return _overview(user, error=str(exc))
    session[_mfa.TOTP_KEY] = enrolment.sealed
    uri = totp.provisioning_uri(enrolment.secret, user.email, runtime().settings.issuer)
    return render_template(
        "idp/mfa/totp.html",
        user=user,
        qr=_mfa.qr_data_uri(uri),
        uri=uri,
        secret=_mfa.grouped(enrolment.secret),
        error=error,
    )


@bp.post("/totp")
@login_required
def totp_activate(user: User) -> tuple[str, int] | Response:
    ctx = mfa_context()
    try:
        mfa.require_recent(_auth_time(), ctx.now)
    except mfa.ReauthRequired:
        return _reauth("mfa_account.totp_form")
    session = server_session()
    try:
        enrolment = mfa.begin_totp(ctx, user, session.get(_mfa.TOTP_KEY))
        codes = mfa.confirm_totp(ctx, user, enrolment, field("code", 64, required=False))
    except mfa.TooManyCodes as exc:
        page = _totp_page(user, error=str(exc))
        return Response(page, 429, {"Retry-After": str(exc.retry_after)})
    except ServiceError as exc:
        return _totp_page(user, error=str(exc)), 400
    session.pop(_mfa.TOTP_KEY, None)
    if codes:
        _mfa.stash_codes(user, codes, url_for("mfa_account.overview"))
        return redirect_to("mfa_account.show_recovery_codes")
    return redirect_to("mfa_account.overview", done="totp-added")


@bp.post("/totp/remove")
@login_required
def totp_remove(user: User) -> tuple[str, int] | Response:
    try:
        mfa.remove_totp(mfa_context(), user, _auth_time())
    except mfa.ReauthRequired:
        return _reauth()
    except ServiceError as exc:
        return _overview(user, error=str(exc)), 400
    return redirect_to("mfa_account.overview", done="totp-removed")


# --- security keys and passkeys --------------------------------------------------------------


@bp.post("/webauthn/options")
@login_required
def webauthn_options(user: User) -> tuple[Response, int] | Response:
    try:
        options, handle = mfa_keys.registration_options(mfa_context(), user, _auth_time())
    except mfa.ReauthRequired as exc:
        return json_error(str(exc), 401, redirect=_mfa.reauth_url(url_for("mfa_account.overview")))
    _mfa.keep_challenge(handle)
    return jsonify({"publicKey": options})


@bp.post("/webauthn/verify")
@login_required
def webauthn_verify(user: User) -> tuple[Response, int] | Response:
    try:
        _, codes = _mfa.register_key(user)
    except ServiceError as exc:
        return json_error(str(exc), 400)
    if codes:
        _mfa.stash_codes(user, codes, url_for("mfa_account.overview"))
        return jsonify({"redirect": url_for("mfa_account.show_recovery_codes")})
    return jsonify({"redirect": url_for("mfa_account.overview", done="key-added")})


@bp.post("/webauthn/<int:credential_id>/rename")
@login_required
def webauthn_rename(user: User, credential_id: int) -> tuple[str, int] | Response:
    try:
        mfa_keys.rename(
            mfa_context(), user, credential_id, field("name", webauthn_service.MAX_NAME * 4)
        )
    except ServiceError as exc:
        return _overview(user, error=str(exc)), 400
    return redirect_to("mfa_account.overview", done="key-renamed")


@bp.post("/webauthn/<int:credential_id>/remove")
@login_required
def webauthn_remove(user: User, credential_id: int) -> tuple[str, int] | Response:
    try:
        mfa_keys.remove(mfa_context(), user, credential_id, _auth_time())
    except mfa.ReauthRequired:
        return _reauth()
    except ServiceError as exc:
        return _overview(user, error=str(exc)), 400
    return redirect_to("mfa_account.overview", done="key-removed")


# --- recovery codes --------------------------------------------------------------------------


@bp.post("/recovery-codes")
@login_required
def regenerate_recovery_codes(user: User) -> tuple[str, int] | Response:
    try:
        codes = mfa.regenerate_recovery_codes(mfa_context(), user, _auth_time())
    except mfa.ReauthRequired:
        return _reauth()
    except ServiceError as exc:
        return _overview(user, error=str(exc)), 400
    _mfa.stash_codes(user, codes, url_for("mfa_account.overview"))
    return redirect_to("mfa_account.show_recovery_codes")


@bp.get("/recovery-codes")
@login_required
def show_recovery_codes(user: User) -> str | Response:
    """Fresh codes, shown on this one page view; a reload finds them gone."""
    fresh = _mfa.pop_codes(user)
    if fresh is None:
        return redirect_to("mfa_account.overview")
    codes, next_url = fresh
    return render_template("idp/mfa/recovery_codes.html", user=user, codes=codes, next=next_url)
