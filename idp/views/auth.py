"""Sign-in and sign-out."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from flask import Blueprint, Response, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from idp.common.redirects import MAX_TARGET, safe_next
from idp.models import User
from idp.runtime import runtime
from idp.services import audit, login_state, mfa, org_settings, users
from idp.services import login as sign_in_service
from idp.services.login import Result
from idp.services.passwords import MAX_LENGTH as MAX_PASSWORD
from idp.services.saml import connections as saml_connections
from idp.services.saml import logout as saml_logout
from idp.services.throttle import ThrottlePolicy
from idp.views._context import saml_context
from idp.views._helpers import actor, current_user, origin, redirect_to, server_session
from idp.views._mfa import org_limits

bp = Blueprint("auth", __name__)

GENERIC_FAILURE = "The email or password is not right."
SSO_REQUIRED = "Your organisation signs in with single sign-on, not with a password here."


@bp.get("/")
def index() -> BaseResponse:
    return redirect_to("account.overview" if current_user() else "auth.login")


@bp.get("/login")
def login_form() -> str | BaseResponse:
    requested = requested_next(request.args)
    user = current_user()
    if user is not None:
        return redirect_to_next(next_for(requested, server_session().record.org_id))
    # An OIDC client's login_hint arrives as ?email=: a prefill, nothing more.
    hint = "".join(ch for ch in request.args.get("email", "")[:254] if ch.isprintable())
    return render_template("idp/login.html", next=requested, email=hint)


@bp.post("/login")
def login() -> tuple[str, int] | BaseResponse:
    rt = runtime()
    settings = rt.settings
    # Kept as asked until the user (and so their organisation's allowed origins) is known;
    # it is checked by next_for before anything redirects to it.
    next_url = requested_next(request.form)
    email = request.form.get("email", "")[: users.MAX_EMAIL + 1]
    password = request.form.get("password", "")[: MAX_PASSWORD + 1]
    if not email or not password:
        return _login_page("Enter your email and your password.", email, next_url, 400)

    attempt = sign_in_service.password_sign_in(
        email,
        password,
        store=rt.store,
        policy=ThrottlePolicy(
            settings.login_max_failures, settings.login_lockout_seconds, settings.ip_max_failures
        ),
        rounds=settings.bcrypt_rounds,
        origin=origin(),
        now=rt.clock(),
    )
    if attempt.result is Result.LOCKED:
        minutes = max(1, round(attempt.retry_after / 60))
        message = f"Too many failed sign-ins. Try again in about {minutes} minute(s)."
        page, status = _login_page(message, email, next_url, 429)
        return Response(page, status, {"Retry-After": str(attempt.retry_after)})
    if attempt.result is Result.SSO_REQUIRED:
        sso_url = url_for("saml.start", slug=attempt.sso_connection, next=next_url)
        shown = _shown(email)
        page = render_template(
            "idp/login.html", error=SSO_REQUIRED, email=shown, next=next_url, sso_url=sso_url
        )
        return page, 403
    if attempt.result is Result.INVALID or attempt.user is None:
        return _login_page(GENERIC_FAILURE, email, next_url, 401)

    return _after_password(attempt.user, next_url)


def _after_password(user: User, next_url: str) -> BaseResponse:
    """Sign in, or hold a pending sign-in for the second factor (or its enrolment)."""
    now = runtime().clock()
    org_id = users.default_org_id(user.id)
    next_url = next_for(next_url, org_id)
    step = mfa.after_password(user, ["pwd"], now)
    if step == "sign_in":
        server_session().sign_in(user.id, org_id, ["pwd"], now, org_limits(org_id))
        return redirect_to_next(next_url)
    stage = login_state.ENROL if step == "enrol" else login_state.SECOND_FACTOR
    pending = login_state.start(user.id, org_id, stage, mfa.methods(user), next_url, now)
    session = server_session()
    session.rotate()  # half-way is a privilege change too: no fixation of the pending state
    session[login_state.SESSION_KEY] = pending.as_dict()
    target = "mfa_login.setup_form" if step == "enrol" else "mfa_login.second_factor_form"
    return redirect_to_next(url_for(target))


@bp.post("/logout")
def logout() -> str | BaseResponse:
    user = current_user()
    kept = server_session().get(saml_logout.SESSION_KEY) if user is not None else None
    if user is not None:
        audit.record(
            "logout",
            actor=actor(user),
            origin=origin(),
            now=runtime().clock(),
            target=server_session().sid,
        )
    server_session().destroy()
    slo_url = _single_logout(kept)
    if slo_url is not None:
        # A page that moves on by itself: this form's redirect chain may not leave our origin
        # (CSP form-action), a page's refresh may.
        return render_template(
            "idp/saml/continue.html", url=slo_url, heading="Signing you out of your organisation"
        )
    return redirect_to("auth.login")


def _single_logout(kept: object) -> str | None:
    """For a session signed in through SAML: the IdP URL carrying our signed LogoutRequest
    (SP-initiated single logout), or None when there is no IdP to tell."""
    if not isinstance(kept, dict):
        return None
    conn = saml_connections.find(str(kept.get("conn", "")))
    if conn is None:
        return None
    return saml_logout.begin(conn, saml_context(), kept)


def requested_next(values: Mapping[str, str]) -> str:
    """The return address as asked, if it is well-formed: a path of ours or an absolute http(s)
    URL (whose origin is checked once the user is known); anything else becomes /account."""
    requested = values.get("next", "")[:MAX_TARGET]
    try:
        parts = urlsplit(requested)
    except ValueError:
        return "/account"
    own = runtime().settings.issuer
    if parts.scheme in {"http", "https"} and parts.netloc:
        return safe_next(requested, own, also=[f"{parts.scheme}://{parts.netloc}"])
    return safe_next(requested, own)


def next_for(requested: str, org_id: str | None) -> str:
    """The requested return address if it is ours or allowed for the organisation."""
    settings = runtime().settings
    allowed = org_settings.redirect_targets(org_id, settings)
    return safe_next(requested, settings.issuer, also=allowed)


def _login_page(message: str, email: str, next_url: str, status: int) -> tuple[str, int]:
    page = render_template("idp/login.html", error=message, email=_shown(email), next=next_url)
    return page, status


def _shown(email: str) -> str:
    """Refill the form with what was typed, but never reflect control characters (NUL …)."""
    return "".join(ch for ch in email[:254] if ch.isprintable())


def redirect_to_next(next_url: str) -> BaseResponse:
    response = Response(status=303)
    response.headers["Location"] = next_url
    return response
