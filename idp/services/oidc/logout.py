"""Logout for relying parties: RP-initiated (end-session endpoint) and back-channel.

Whenever an IdP session ends, for whatever reason (sign-out, revocation, an admin, a password
reset, expiry noticed), the grants bound to it are revoked and every client that signed in
through it and registered a back-channel URI receives a logout token. Tokens are signed and
recorded here, in the request; only the HTTP deliveries run on a small thread pool, so a slow
client never holds up a sign-out.
"""

from __future__ import annotations

import logging
import secrets
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from flask import has_app_context
from sqlalchemy import select

from idp.common.signing import InvalidToken, verify
from idp.extensions import db
from idp.models.oidc import OAuthClient
from idp.runtime import runtime
from idp.services import audit, sessions
from idp.services.audit import Origin
from idp.services.oidc import keys, tokens

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
DELIVERY_TIMEOUT_SECONDS = 5
LOGOUT_TOKEN_SECONDS = 120

log = logging.getLogger("bascule.oidc")
_deliveries = ThreadPoolExecutor(max_workers=4, thread_name_prefix="backchannel-logout")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could lead the IdP's own request somewhere the registration did not say."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def install() -> None:
    """Listen for session ends (idempotent: one listener per process)."""
    sessions.on_end(_session_ended)


def _session_ended(sid: str, uid: str | None) -> None:
    if not has_app_context():
        return
    client_ids = tokens.clients_of_session(sid)
    tokens.revoke_grants_of_session(sid, audit.CLI)
    if not client_ids or uid is None:
        return
    targets = db.session.scalars(
        select(OAuthClient).where(
            OAuthClient.id.in_(client_ids), OAuthClient.backchannel_logout_uri.is_not(None)
        )
    ).all()
    for client in targets:
        assert client.backchannel_logout_uri is not None
        token = logout_token(client, uid, sid)
        _deliveries.submit(_deliver, client.id, client.backchannel_logout_uri, token)
        audit.record(
            "oidc.backchannel_logout",
            target=client.id,
            details={"sid": sid, "uri": client.backchannel_logout_uri},
        )


def logout_token(client: OAuthClient, uid: str, sid: str) -> str:
    now = int(runtime().clock())
    body = {
        "iss": runtime().settings.issuer,
        "aud": client.id,
        "sub": uid,
        "sid": sid,
        "iat": now,
        "exp": now + LOGOUT_TOKEN_SECONDS,
        "jti": secrets.token_urlsafe(16),
        "events": {BACKCHANNEL_EVENT: {}},
    }
    return keys.signer(client.id_token_alg).sign(body, typ="logout+jwt")


def _deliver(client_id: str, uri: str, token: str) -> None:
    data = urllib.parse.urlencode({"logout_token": token}).encode()
    request = urllib.request.Request(  # noqa: S310 - a registered http(s) URI, checked at creation
        uri, data=data, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    try:
        with _opener.open(request, timeout=DELIVERY_TIMEOUT_SECONDS) as answer:
            log.info("back-channel logout to %s: HTTP %s", client_id, answer.status)
    except (urllib.error.URLError, OSError) as exc:
        log.warning("back-channel logout to %s failed: %s", client_id, exc)


# --- RP-initiated logout -------------------------------------------------------------------


@dataclass(frozen=True)
class EndSession:
    """A validated end-session request: where to send the browser afterwards (if anywhere)."""

    client: OAuthClient | None
    redirect: str | None
    hinted_sid: str | None  # the session the ID token hint names
    trusted: bool  # the hint proves the RP asked, so no confirmation page is needed


class EndSessionError(ValueError):
    """Shown on an error page; never redirected (the redirect target is what is in doubt)."""


def end_session_request(params: dict[str, str]) -> EndSession:
    hint = params.get("id_token_hint")
    client_id = params.get("client_id")
    hinted: dict[str, Any] = {}
    if hint:
        hinted = _check_hint(hint)
        aud = hinted.get("aud")
        hinted_client = aud[0] if isinstance(aud, list) and aud else aud
        if client_id and client_id != hinted_client:
            raise EndSessionError("client_id does not match the ID token hint.")
        client_id = str(hinted_client)
    client = db.session.get(OAuthClient, client_id) if client_id else None
    if client_id and client is None:
        raise EndSessionError("Unknown client.")
    target = params.get("post_logout_redirect_uri")
    redirect = None
    if target:
        if client is None:
            raise EndSessionError("post_logout_redirect_uri needs id_token_hint or client_id.")
        if target not in client.post_logout_redirect_uris:
            raise EndSessionError("post_logout_redirect_uri is not registered for this client.")
        state = params.get("state")
        redirect = target
        if state:
            sep = "&" if urllib.parse.urlsplit(target).query else "?"
            redirect = f"{target}{sep}{urllib.parse.urlencode({'state': state})}"
    sid = hinted.get("sid")
    return EndSession(client, redirect, str(sid) if sid else None, trusted=bool(hint))


def _check_hint(hint: str) -> dict[str, Any]:
    """An ID token we issued; it may have expired (the spec allows it), but must be ours."""
    if len(hint) > 8192:
        raise EndSessionError("The ID token hint is not valid.")
    try:
        found = verify(hint, keys.key_set())
    except InvalidToken:
        raise EndSessionError("The ID token hint is not valid.") from None
    if found.get("iss") != runtime().settings.issuer:
        raise EndSessionError("The ID token hint was not issued here.")
    return found


def audit_end(user_id: str | None, request: EndSession, origin: Origin) -> None:
    audit.record(
        "oidc.end_session",
        actor=audit.Actor(user_id),
        target=request.client.id if request.client else None,
        origin=origin,
        details={"redirect": bool(request.redirect)},
    )
