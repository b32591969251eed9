"""SP-initiated sign-in: the AuthnRequest out, the Response in, validated and used only once.

The request's ID is remembered in the browser's server-side session under a random reference,
and only that reference travels as RelayState (never a URL). The IdP's answer arrives as a
cross-site POST, which carries no SameSite=Lax session cookie; so the POST is only parked
(``stash``) and the browser is sent back to us with a same-site GET, which does carry the
session: only then is the response checked against the request this browser made (``finish``).
A response answering another browser's request, or none at all when IdP-initiated sign-in
is off, is refused. Each assertion ID is accepted once, remembered until it expires.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from idp.common import metrics
from idp.extensions import db
from idp.models import SamlConnection
from idp.services import audit, one_time
from idp.services.errors import ServiceError
from idp.services.saml import sp
from idp.services.saml.sp import SamlContext

PENDING_KEY = "saml_requests"
MAX_PENDING = 5
REQUEST_TTL_SECONDS = 10 * 60
STASH_TTL_SECONDS = 2 * 60
MAX_RESPONSE_CHARS = 256 * 1024
REPLAY_PREFIX = "saml:assertion:"
# A response without an expiry is still remembered this long (the replay window we close).
DEFAULT_REPLAY_SECONDS = 24 * 3600
LOGIN, TEST = "login", "test"
GENERIC_FAILURE = (
    "Single sign-on did not succeed: your organisation's identity provider sent an answer we "
    "cannot accept. Try again from the start; if it keeps happening, tell your administrator."
)


class Rejected(ServiceError):
    """The IdP's answer was refused; ``reason`` is for the audit log, the message for people."""

    def __init__(self, reason: str, message: str = GENERIC_FAILURE) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Assertion:
    """What a validated response says about the person."""

    connection: str
    name_id: str
    name_id_format: str | None
    session_index: str | None
    attributes: dict[str, list[str]]
    authn_contexts: list[str] = field(default_factory=list)
    mode: str = LOGIN
    next_url: str = "/account"


def begin(
    conn: SamlConnection,
    ctx: SamlContext,
    pending: MutableMapping[str, Any],
    next_url: str,
    mode: str = LOGIN,
) -> str:
    """The IdP URL to send the browser to; the request is remembered in ``pending`` (the
    browser's server-side session)."""
    at = sp.urls(ctx.issuer, conn.slug)
    auth = OneLogin_Saml2_Auth(
        sp.request_data(at["login"]), old_settings=sp.settings_for(conn, ctx.issuer, ctx.keyring)
    )
    ref = secrets.token_urlsafe(24)
    url: str = auth.login(return_to=ref)
    requests = _live_requests(pending.get(PENDING_KEY), ctx.now)
    requests[ref] = {
        "id": auth.get_last_request_id(),
        "conn": conn.slug,
        "next": next_url,
        "mode": mode,
        "expires": ctx.now + REQUEST_TTL_SECONDS,
    }
    newest = sorted(requests.items(), key=lambda item: item[1]["expires"])[-MAX_PENDING:]
    pending[PENDING_KEY] = dict(newest)
    return url


def stash(conn: SamlConnection, ctx: SamlContext, form: Mapping[str, str]) -> str:
    """Park the POSTed response for a moment; the reference leads to ``finish``."""
    response = form.get("SAMLResponse", "")
    if not response or len(response) > MAX_RESPONSE_CHARS or not _looks_like_xml(response):
        raise reject(
            conn, ctx, "no_response", "This address expects a sign-in answer from your IdP."
        )
    payload = {"response": response, "relay": form.get("RelayState", "")[:256]}
    return one_time.issue(ctx.store, "saml_acs", payload, STASH_TTL_SECONDS, ctx.now)


def _looks_like_xml(encoded: str) -> bool:
    """Base64 of something that starts like XML: junk is refused before it is parked."""
    try:
        head = base64.b64decode(encoded[:64] + "=" * (-len(encoded[:64]) % 4), validate=True)
    except binascii.Error:
        return False
    return head.lstrip().startswith(b"<")


def finish(
    conn: SamlConnection, ctx: SamlContext, pending: MutableMapping[str, Any], ref: str
) -> Assertion:
    """Validate the parked response for this browser; every refusal is audited."""
    posted = one_time.consume(ctx.store, "saml_acs", ref, ctx.now)
    if posted is None:
        raise reject(conn, ctx, "stale", "This sign-in has expired. Start again.")
    request = _take_request(pending, posted["relay"], conn, ctx.now)
    if request is None and not conn.allow_idp_initiated:
        raise reject(conn, ctx, "unsolicited")
    at = sp.urls(ctx.issuer, conn.slug)
    auth = OneLogin_Saml2_Auth(
        sp.request_data(at["acs"], post={"SAMLResponse": posted["response"]}),
        old_settings=sp.settings_for(conn, ctx.issuer, ctx.keyring),
    )
    try:
        auth.process_response(request_id=request["id"] if request else None)
    except Exception as error:  # python3-saml raises lxml, base64 and its own errors alike
        raise reject(conn, ctx, "malformed", detail=type(error).__name__) from None
    if auth.get_errors():
        raise reject(conn, ctx, "invalid", detail=auth.get_last_error_reason() or "")
    problem = _addressing_problem(auth, at["acs"], request["id"] if request else None)
    if problem:
        raise reject(conn, ctx, problem)
    name_id = auth.get_nameid()
    if not name_id:
        raise reject(conn, ctx, "no_name_id")
    _claim_once(conn, ctx, auth)
    return Assertion(
        connection=conn.slug,
        name_id=str(name_id)[:512],
        name_id_format=auth.get_nameid_format(),
        session_index=auth.get_session_index(),
        attributes={str(k): [str(v) for v in vs] for k, vs in auth.get_attributes().items()},
        authn_contexts=list(auth.get_last_authn_contexts() or []),
        mode=request["mode"] if request else LOGIN,
        next_url=request["next"] if request else "/account",
    )


def reject(
    conn: SamlConnection,
    ctx: SamlContext,
    reason: str,
    message: str = GENERIC_FAILURE,
    detail: str = "",
) -> Rejected:
    """An audited refusal: the reason (and python3-saml's words) for the log, a plain page.

    Whatever the refused sign-in changed so far is dropped first (the audit entry commits the
    session): a refusal must not leave, say, the IdP's NameID linked to a disabled account.
    """
    db.session.rollback()
    metrics.SAML_RESULTS.labels(reason).inc()
    details = {"reason": reason, "connection": conn.slug}
    if detail:
        details["detail"] = detail[:300]
    audit.record(
        "saml.rejected",
        outcome="failure",
        org_id=conn.org_id,
        target=conn.slug,
        origin=ctx.origin,
        details=details,
        now=ctx.now,
    )
    return Rejected(reason, message)


def _addressing_problem(
    auth: OneLogin_Saml2_Auth, acs_url: str, request_id: str | None
) -> str | None:
    """What python3-saml checks loosely, checked exactly (after its signature checks passed).

    It compares Destination as a prefix and Recipient as a substring of our URL, accepts a
    response without InResponseTo even when we sent a request, and compares the assertion's
    InResponseTo only with the Response's. Here: both URLs equal the ACS exactly, and every
    InResponseTo is the request this browser made (or absent, for IdP-initiated sign-in).
    """
    document = OneLogin_Saml2_XML.to_etree(auth.get_last_response_xml())
    destination = document.get("Destination")
    if destination is not None and destination != acs_url:
        return "wrong_destination"
    confirmations = OneLogin_Saml2_XML.query(
        document,
        "/samlp:Response/saml:Assertion/saml:Subject/saml:SubjectConfirmation"
        "/saml:SubjectConfirmationData",
    )
    if any(data.get("Recipient") != acs_url for data in confirmations):
        return "wrong_recipient"
    answered = {document.get("InResponseTo")} | {d.get("InResponseTo") for d in confirmations}
    return "wrong_in_response_to" if answered != {request_id} else None


def _take_request(
    pending: MutableMapping[str, Any], relay: str, conn: SamlConnection, now: float
) -> dict[str, Any] | None:
    """The request this browser made under ``relay``, used up; None if there is none."""
    requests = _live_requests(pending.get(PENDING_KEY), now)
    request = requests.pop(relay, None)
    pending[PENDING_KEY] = requests
    if request is None or request["conn"] != conn.slug:
        return None
    return request


def _live_requests(raw: Any, now: float) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return {}
    return {ref: r for ref, r in raw.items() if isinstance(r, dict) and r.get("expires", 0) > now}


def _claim_once(conn: SamlConnection, ctx: SamlContext, auth: OneLogin_Saml2_Auth) -> None:
    """Remember the assertion ID until the assertion expires; a second use is a replay."""
    assertion_id = auth.get_last_assertion_id() or ""
    expires = auth.get_last_assertion_not_on_or_after()
    ttl = (
        expires + sp.Constants.ALLOWED_CLOCK_DRIFT - ctx.now if expires else DEFAULT_REPLAY_SECONDS
    )
    digest = hashlib.sha256(assertion_id.encode()).hexdigest()
    if not ctx.store.add(f"{REPLAY_PREFIX}{conn.id}:{digest}", "1", max(ttl, 60)):
        raise reject(conn, ctx, "replay")
