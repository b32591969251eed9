"""OpenID Connect endpoints: discovery, JWKS, authorize (with consent), token, UserInfo,
introspection, revocation, end-session. Protocol work is authlib's and services/oidc's."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from flask import Blueprint, Response, current_app, jsonify, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from idp.common.redirects import MAX_TARGET
from idp.extensions import csrf, db
from idp.models import User
from idp.runtime import runtime
from idp.services import audit
from idp.services.oidc import authorize, claims, consent, keys, logout, tokens
from idp.services.oidc.authorize import Step
from idp.services.oidc.server import CONFIDENTIAL_AUTH_METHODS, TOKEN_AUTH_METHODS, Server
from idp.services.oidc.tokens import Subject
from idp.views._helpers import actor, allow_form_target, current_user, origin, server_session

bp = Blueprint("oidc", __name__)

AUTHORIZE_PATH = "/oauth2/authorize"
# Authorization request parameters carried through sign-in and the consent form.
CARRIED = (
    "response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "prompt",
    "max_age", "login_hint", "code_challenge", "code_challenge_method", "response_mode",
    "ui_locales", "acr_values",
)  # fmt: skip


def oidc_server() -> Server:
    return current_app.extensions["bascule_oidc"]  # type: ignore[no-any-return]


def _issuer_url(path: str) -> str:
    return runtime().settings.issuer + path


@bp.get("/.well-known/openid-configuration")
def discovery() -> Response:
    auth_methods = list(TOKEN_AUTH_METHODS)
    confidential = list(CONFIDENTIAL_AUTH_METHODS)
    document = {
        "issuer": runtime().settings.issuer,
        "authorization_endpoint": _issuer_url(AUTHORIZE_PATH),
        "token_endpoint": _issuer_url("/oauth2/token"),
        "userinfo_endpoint": _issuer_url("/oauth2/userinfo"),
        "jwks_uri": _issuer_url("/oauth2/jwks"),
        "end_session_endpoint": _issuer_url("/oauth2/logout"),
        "revocation_endpoint": _issuer_url("/oauth2/revoke"),
        "introspection_endpoint": _issuer_url("/oauth2/introspect"),
        "scopes_supported": list(claims.SCOPES),
        "claims_supported": list(claims.CLAIMS),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": confidential,
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": sorted(authorize.PROMPTS),
        "acr_values_supported": [claims.ACR_SINGLE, claims.ACR_MULTI],
        "authorization_response_iss_parameter_supported": True,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "claims_parameter_supported": False,
    }
    response = jsonify(document)
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/oauth2/jwks")
def jwks() -> Response:
    response = jsonify(keys.public_jwks())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


# --- authorization -------------------------------------------------------------------------


@bp.route(AUTHORIZE_PATH, methods=["GET", "POST"])
@csrf.exempt  # a POSTed authorization request comes from the client's page, not our form
def authorize_endpoint() -> BaseResponse | tuple[str, int]:
    return _authorize(consented=False)


@bp.post("/oauth2/authorize/consent")
def consent_decision() -> BaseResponse | tuple[str, int]:
    """The consent form's answer (CSRF-protected like every form of ours)."""
    return _authorize(consented=request.form.get("decision") == "allow", answered=True)


def _authorize(consented: bool, answered: bool = False) -> BaseResponse | tuple[str, int]:
    server = oidc_server()
    try:
        grant = server.get_consent_grant(end_user=None)
    except OAuth2Error as error:
        return _authorization_error(error)
    client = grant.request.client.model
    scope: str = grant.request.scope
    redirect_uri: str = grant.redirect_uri
    state = request.values.get("state")
    for name in ("request", "request_uri"):  # OpenID Connect Core 6: said to the client
        if name in request.values:
            return _redirect_error(
                redirect_uri, f"{name}_not_supported", "Request objects are not supported.", state
            )
    user = current_user()
    session = server_session()
    if answered and not consented:
        audit.record(
            "oidc.consent.deny", actor=actor(user) if user else audit.ANONYMOUS,
            target=client.id, origin=origin(),
        )  # fmt: skip
        return _redirect_error(redirect_uri, "access_denied", "The user said no.", state)
    if answered and user is not None:
        consent.grant(client, user, scope, origin())
    prompt = request.values.get("prompt")
    if answered:
        prompt = " ".join(p for p in (prompt or "").split() if p != "consent")
    now = runtime().clock()
    outcome = authorize.decide(
        client,
        user,
        session.record.auth_time,
        scope,
        prompt,
        request.values.get("max_age"),
        session.get(authorize.REAUTH_MARKER),
        now,
    )
    if outcome.error is not None:
        return _redirect_error(redirect_uri, outcome.error, outcome.description, state)
    if outcome.step in (Step.LOGIN, Step.REAUTH) and len(_resume_url()) > MAX_TARGET:
        # Sign-in carries the request in `next`, which keeps MAX_TARGET characters: cut
        # short, it would come back as another request (without its state, PKCE or prompt).
        return _redirect_error(redirect_uri, "invalid_request", "The request is too long.", state)
    if outcome.step is Step.LOGIN:
        hint = request.values.get("login_hint", "")[:254]
        return _redirect(url_for("auth.login", next=_resume_url(), email=hint or None))
    if outcome.step is Step.REAUTH:
        session[authorize.REAUTH_MARKER] = now
        return _redirect(url_for("mfa_login.reauth", next=_resume_url()))
    if outcome.step is Step.CONSENT:
        allow_form_target(redirect_uri)
        return render_template(
            "idp/oidc/consent.html",
            client=client,
            scopes=[(s, claims.SCOPE_TEXT.get(s, s)) for s in scope.split()],
            params=_carried(),
            user=user,
        )
    assert user is not None and session.sid is not None
    session.pop(authorize.REAUTH_MARKER, None)
    subject = Subject(
        user, session.record.org_id, session.sid, session.record.auth_time or now,
        list(session.record.amr),
    )  # fmt: skip
    return server.create_authorization_response(grant=grant, grant_user=subject)  # type: ignore[no-any-return]


def _carried() -> dict[str, str]:
    return {k: request.values[k] for k in CARRIED if k in request.values}


def _resume_url() -> str:
    """This authorization request as a GET on our own path, to come back to after sign-in."""
    return f"{AUTHORIZE_PATH}?{urlencode(_carried())}"


def _redirect(location: str) -> BaseResponse:
    response = Response(status=302)
    response.headers["Location"] = location
    return response


def _redirect_error(
    redirect_uri: str, error: str, description: str, state: str | None
) -> BaseResponse:
    params = {"error": error, "error_description": description}
    if state:
        params["state"] = state
    params["iss"] = runtime().settings.issuer
    return _redirect(add_params_to_uri(redirect_uri, params))


def _authorization_error(error: OAuth2Error) -> BaseResponse | tuple[str, int]:
    """Back to the client when its redirect URI is proven; an error page otherwise (a bad
    client_id or redirect_uri must never become an open redirect)."""
    if error.redirect_uri:
        state = request.values.get("state")
        return _redirect_error(error.redirect_uri, error.error, error.description or "", state)
    return _error_page(error.description or error.error)


def _error_page(message: str) -> tuple[str, int]:
    return render_template("idp/oidc/error.html", message=message), 400


# --- token, userinfo, introspection, revocation --------------------------------------------


@bp.post("/oauth2/token")
@csrf.exempt
def token() -> Response:
    return oidc_server().create_token_response()  # type: ignore[no-any-return]


@bp.post("/oauth2/introspect")
@csrf.exempt
def introspect() -> Response:
    return oidc_server().create_endpoint_response("introspection")  # type: ignore[no-any-return]


@bp.post("/oauth2/revoke")
@csrf.exempt
def revoke() -> Response:
    return oidc_server().create_endpoint_response("revocation")  # type: ignore[no-any-return]


@bp.route("/oauth2/userinfo", methods=["GET", "POST"])
@csrf.exempt
def userinfo() -> Response | tuple[Response, int]:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    presented = value.strip() if scheme.lower() == "bearer" else ""
    found = tokens.check_access_token(presented) if presented else None
    if found is None or "openid" not in found.scopes:
        return _bearer_error("invalid_token", "The access token is not valid.", 401)
    user = db.session.get(User, found.claims["sub"])
    assert user is not None  # check_access_token saw the user active
    body: dict[str, Any] = {"sub": user.id}
    body |= claims.for_scope(user, found.claims.get("org_id"), found.claims["scope"])
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response


def _bearer_error(error: str, description: str, status: int) -> tuple[Response, int]:
    response = jsonify({"error": error, "error_description": description})
    response.headers["WWW-Authenticate"] = f'Bearer error="{error}"'
    response.headers["Cache-Control"] = "no-store"
    return response, status


# --- RP-initiated logout -------------------------------------------------------------------


@bp.route("/oauth2/logout", methods=["GET", "POST"])
@csrf.exempt  # a POSTed logout request comes from the client; it only shows the confirmation
def end_session() -> BaseResponse | tuple[str, int]:
    params = {k: v for k, v in request.values.items() if isinstance(v, str)}
    try:
        wanted = logout.end_session_request(params)
    except logout.EndSessionError as exc:
        return _error_page(str(exc))
    user = current_user()
    session = server_session()
    if user is None:
        return _signed_out(wanted)
    # The hint proves the request for the session it names only: one naming none (or
    # another) would let any page sign the user out with an ID token its own RP holds.
    if wanted.trusted and wanted.hinted_sid == session.sid:
        return _sign_out(wanted, user.id)
    return render_template("idp/oidc/logout_confirm.html", params=params, client=wanted.client)


@bp.post("/oauth2/logout/confirm")
def end_session_confirmed() -> BaseResponse | tuple[str, int]:
    params = {k: v for k, v in request.form.items() if k != "csrf_token"}
    try:
        wanted = logout.end_session_request(params)
    except logout.EndSessionError as exc:
        return _error_page(str(exc))
    user = current_user()
    if user is None:
        return _signed_out(wanted)
    return _sign_out(wanted, user.id)


def _sign_out(wanted: logout.EndSession, user_id: str) -> BaseResponse | tuple[str, int]:
    logout.audit_end(user_id, wanted, origin())
    server_session().destroy()
    return _signed_out(wanted)


def _signed_out(wanted: logout.EndSession) -> BaseResponse | tuple[str, int]:
    if wanted.redirect:
        return _redirect(wanted.redirect)
    return render_template("idp/oidc/signed_out.html"), 200
