"""SAML endpoints per connection (``/saml/<slug>/…``) and home-realm discovery (``/sso``)."""

from __future__ import annotations

from flask import Blueprint, Response, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from idp.extensions import csrf, db
from idp.runtime import runtime
from idp.services import users
from idp.services.saml import connections, login, logout, provisioning, sp
from idp.views._context import saml_context
from idp.views._helpers import server_session
from idp.views._mfa import org_limits
from idp.views.admin.sso import show_test_result
from idp.views.auth import next_for, redirect_to_next, requested_next

bp = Blueprint("saml", __name__)


@bp.get("/saml/<slug>/metadata")
def metadata(slug: str) -> Response:
    rt = runtime()
    xml = sp.sp_metadata(connections.get(slug), rt.settings.issuer, rt.keyring)
    return Response(xml, 200, {"Content-Type": "application/samlmetadata+xml"})


@bp.get("/saml/<slug>/login")
def start(slug: str) -> BaseResponse:
    """SP-initiated sign-in: off to the IdP with a fresh AuthnRequest."""
    conn = connections.get(slug)
    url = login.begin(conn, saml_context(), server_session(), requested_next(request.args))
    return redirect_to_next(url)


@bp.post("/saml/<slug>/acs")
@csrf.exempt  # the IdP's page posts here; the response is checked by signature, not by a token
def acs_post(slug: str) -> BaseResponse:
    """Park the IdP's answer and come back same-site, where the session cookie is sent."""
    ref = login.stash(connections.get(slug), saml_context(), request.form)
    return redirect_to_next(url_for("saml.acs", slug=slug, r=ref))


@bp.get("/saml/<slug>/acs")
def acs(slug: str) -> str | BaseResponse:
    conn = connections.get(slug)
    ctx = saml_context()
    assertion = login.finish(conn, ctx, server_session(), request.args.get("r", "")[:128])
    if assertion.mode == login.TEST:
        return show_test_result(conn, assertion)
    outcome = provisioning.provision(conn, ctx, assertion)
    session = server_session()
    session.sign_in(
        outcome.user.id, conn.org_id, provisioning.amr(assertion), ctx.now, org_limits(conn.org_id)
    )
    ttl = runtime().session_limits.absolute_seconds
    kept = logout.remember(conn, ctx, assertion, session.sid or "", outcome.user.id, ttl)
    session[logout.SESSION_KEY] = kept
    return redirect_to_next(next_for(assertion.next_url, conn.org_id))


@bp.get("/saml/<slug>/sls")
def sls(slug: str) -> str | BaseResponse:
    """Single logout: a LogoutRequest from the IdP, or its LogoutResponse to ours."""
    conn = connections.get(slug)
    query = {k: v[: 64 * 1024] for k, v in request.args.items()}
    answer = logout.handle(conn, saml_context(), query, request.query_string.decode("latin-1"))
    if answer is not None:
        return redirect_to_next(answer)
    return render_template("idp/oidc/signed_out.html")


@bp.route("/sso", methods=["GET", "POST"])
def discover() -> str | tuple[str, int]:
    """Home-realm discovery: the address's domain says which IdP to go to."""
    next_url = requested_next(request.values)
    if request.method == "GET":
        return render_template("idp/saml/discover.html", next=next_url, email="")
    email = users.normalise_email(request.form.get("email", "")[: users.MAX_EMAIL])
    conn = connections.for_domain(email.rpartition("@")[2]) if users.valid_email(email) else None
    db.session.rollback()
    if conn is None:
        message = "Single sign-on is not set up for this address. Sign in with your password."
        shown = "".join(ch for ch in email if ch.isprintable())
        page = render_template("idp/saml/discover.html", error=message, next=next_url, email=shown)
        return page, 404
    return continue_to(url_for("saml.start", slug=conn.slug, next=next_url))


def continue_to(url: str) -> str:
    """A page that moves on to ``url`` by itself: a form's redirect chain may not leave our
    origin (CSP form-action), a page's refresh may."""
    return render_template("idp/saml/continue.html", url=url)
