"""Single logout, both ways, over the HTTP-Redirect binding.

SP-initiated: the Bascule session ends first (so a failing IdP cannot keep it alive), then the
browser carries a signed LogoutRequest to the IdP, whose LogoutResponse must answer a request
we remember. IdP-initiated: a signed LogoutRequest ends the sessions its SessionIndex names
(or, without one, every session of the linked account), and we answer with a signed
LogoutResponse. Ending a session goes through ``sessions.destroy``, so OIDC clients hear of
it by back-channel logout and the gateway refuses the next request. Unsigned messages are
refused: anyone could otherwise sign people out.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from onelogin.saml2.logout_response import OneLogin_Saml2_Logout_Response
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML
from sqlalchemy import select

from idp.extensions import db
from idp.models import SamlConnection, SamlIdentity
from idp.services import audit, sessions
from idp.services.saml import login, sp
from idp.services.saml.login import Assertion
from idp.services.saml.sp import SamlContext

INDEX_PREFIX = "saml:sidx:"
REQUEST_PREFIX = "saml:slo:"
SEEN_PREFIX = "saml:slo-seen:"
REQUEST_TTL_SECONDS = 10 * 60
SESSION_KEY = "saml"  # in the session's data: what SP-initiated logout needs


def remember(
    conn: SamlConnection, ctx: SamlContext, assertion: Assertion, sid: str, uid: str, ttl: float
) -> dict[str, Any]:
    """Index the new session by its SAML session, for IdP-initiated logout; returns what the
    session keeps for SP-initiated logout."""
    value = json.dumps({"sid": sid, "uid": uid})
    ctx.store.put(_index_key(conn, assertion.name_id, assertion.session_index), value, ttl)
    return {
        "conn": conn.slug,
        "name_id": assertion.name_id,
        "name_id_format": assertion.name_id_format,
        "session_index": assertion.session_index,
    }


def begin(conn: SamlConnection, ctx: SamlContext, kept: dict[str, Any]) -> str | None:
    """The IdP URL carrying our LogoutRequest, or None when the IdP has no SLO endpoint."""
    if not conn.slo_url:
        return None
    auth = _auth(conn, ctx)
    url: str = auth.logout(
        name_id=kept.get("name_id"),
        session_index=kept.get("session_index"),
        name_id_format=kept.get("name_id_format"),
    )
    ctx.store.put(_request_key(auth.get_last_request_id()), conn.slug, REQUEST_TTL_SECONDS)
    return url


def handle(
    conn: SamlConnection, ctx: SamlContext, query: dict[str, str], query_string: str
) -> str | None:
    """Process what the IdP sent to the SLS: a LogoutRequest (returns where to send the
    LogoutResponse) or the LogoutResponse to ours (returns None)."""
    if "Signature" not in query:
        raise login.reject(conn, ctx, "logout_unsigned")
    auth = _auth(conn, ctx, query, query_string)
    if "SAMLRequest" in query:
        return _logout_request(conn, ctx, auth)
    if "SAMLResponse" in query:
        _logout_response(conn, ctx, auth, query["SAMLResponse"])
        return None
    raise login.reject(conn, ctx, "logout_no_message")


def _logout_request(conn: SamlConnection, ctx: SamlContext, auth: OneLogin_Saml2_Auth) -> str:
    try:
        answer: str = auth.process_slo(keep_local_session=True)
    except Exception as error:  # python3-saml raises lxml, zlib and its own errors alike
        raise login.reject(conn, ctx, "logout_malformed", detail=type(error).__name__) from None
    if auth.get_errors():
        raise login.reject(conn, ctx, "logout_invalid", detail=auth.get_last_error_reason() or "")
    xml = auth.get_last_request_xml()
    problem = _misaddressed(xml, conn, ctx) or _replayed(xml, conn, ctx)
    if problem:
        raise login.reject(conn, ctx, problem)
    name_id = OneLogin_Saml2_Logout_Request.get_nameid(xml)
    indexes = OneLogin_Saml2_Logout_Request.get_session_indexes(xml)
    ended = _end_sessions(conn, ctx, name_id, indexes)
    audit.record(
        "saml.logout",
        org_id=conn.org_id,
        target=conn.slug,
        origin=ctx.origin,
        details={"initiated_by": "idp", "sessions_ended": ended},
        now=ctx.now,
    )
    return answer


def _logout_response(
    conn: SamlConnection, ctx: SamlContext, auth: OneLogin_Saml2_Auth, encoded: str
) -> None:
    try:
        answering = OneLogin_Saml2_Logout_Response(auth.get_settings(), encoded)
        request_id = answering.get_in_response_to()
    except Exception as error:
        raise login.reject(conn, ctx, "logout_malformed", detail=type(error).__name__) from None
    if not request_id or ctx.store.get(_request_key(request_id)) != conn.slug:
        raise login.reject(conn, ctx, "logout_unsolicited")
    try:
        auth.process_slo(keep_local_session=True, request_id=request_id)
    except Exception as error:
        raise login.reject(conn, ctx, "logout_malformed", detail=type(error).__name__) from None
    if auth.get_errors():
        raise login.reject(conn, ctx, "logout_invalid", detail=auth.get_last_error_reason() or "")
    problem = _misaddressed(auth.get_last_response_xml(), conn, ctx)
    if problem:
        raise login.reject(conn, ctx, problem)
    # Used up only once the answer proved genuine: a forged one (wrong key, tampered) must not
    # spend the request, or the IdP's real answer that follows would be refused. Taken, not
    # just read, so the same answer is accepted once.
    if ctx.store.take(_request_key(request_id)) != conn.slug:
        raise login.reject(conn, ctx, "logout_unsolicited")
    audit.record(
        "saml.logout_confirmed",
        org_id=conn.org_id,
        target=conn.slug,
        origin=ctx.origin,
        now=ctx.now,
    )


def _misaddressed(xml: str, conn: SamlConnection, ctx: SamlContext) -> str | None:
    """python3-saml compares Destination as a prefix of our URL; it must be our SLS exactly."""
    destination = OneLogin_Saml2_XML.to_etree(xml).get("Destination")
    sls = sp.urls(ctx.issuer, conn.slug)["sls"]
    return "logout_wrong_destination" if destination not in (None, sls) else None


def _replayed(xml: str, conn: SamlConnection, ctx: SamlContext) -> str | None:
    """A LogoutRequest is accepted once, and only while fresh: a captured one (without a
    SessionIndex it signs the person out everywhere) cannot be sent again later."""
    document = OneLogin_Saml2_XML.to_etree(xml)
    try:
        issued = OneLogin_Saml2_Utils.parse_SAML_to_time(document.get("IssueInstant", ""))
    except Exception:  # python3-saml raises a bare Exception for a malformed time
        return "logout_malformed"
    if abs(ctx.now - issued) > REQUEST_TTL_SECONDS:
        return "logout_stale"
    digest = hashlib.sha256((document.get("ID") or "").encode()).hexdigest()
    key = f"{SEEN_PREFIX}{conn.id}:{digest}"
    return None if ctx.store.add(key, "1", 2 * REQUEST_TTL_SECONDS) else "logout_replay"


def _end_sessions(conn: SamlConnection, ctx: SamlContext, name_id: str, indexes: list[str]) -> int:
    if not indexes:
        identity = db.session.scalar(
            select(SamlIdentity).where(
                SamlIdentity.connection_id == conn.id, SamlIdentity.name_id == name_id
            )
        )
        return sessions.revoke_all(ctx.store, identity.user_id) if identity else 0
    ended = 0
    for index in indexes:
        raw = ctx.store.take(_index_key(conn, name_id, index))
        if raw:
            entry = json.loads(raw)
            sessions.destroy(ctx.store, entry["sid"], entry["uid"])
            ended += 1
    return ended


def _auth(
    conn: SamlConnection,
    ctx: SamlContext,
    query: dict[str, str] | None = None,
    query_string: str = "",
) -> OneLogin_Saml2_Auth:
    url = sp.urls(ctx.issuer, conn.slug)["sls"]
    return OneLogin_Saml2_Auth(
        sp.request_data(url, get=query, query_string=query_string),
        old_settings=sp.settings_for(conn, ctx.issuer, ctx.keyring),
    )


def _index_key(conn: SamlConnection, name_id: str, session_index: str | None) -> str:
    digest = hashlib.sha256(f"{name_id}\0{session_index or ''}".encode()).hexdigest()
    return f"{INDEX_PREFIX}{conn.id}:{digest}"


def _request_key(request_id: str) -> str:
    return REQUEST_PREFIX + hashlib.sha256(request_id.encode()).hexdigest()
