"""Helpers for the OpenID provider's tests: register a client, drive the authorization code flow
with PKCE through the real HTTP stack as a browser does (authorize, sign-in form, consent form,
back to the client), call the token-side endpoints as the client does, and check JWTs against
the published JWKS with joserfc, as an independent relying party would."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from flask import Flask
from joserfc import jwk, jwt
from sqlalchemy import select

from idp.extensions import db
from idp.models import AuditEvent
from idp.services.oidc import clients
from tests.support import STRONG_PASSWORD

REDIRECT_URI = "http://localhost:3000/callback"
POST_LOGOUT_REDIRECT_URI = "http://localhost:3000/signed-out"
SCOPE = "openid profile email offline_access"
JANE = "jane@acme.test"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_HOPS = 12  # redirects and forms in one browser navigation

_FORM = re.compile(r"<form\b[^>]*>.*?</form>", re.S)
_ATTRIBUTE = re.compile(r'([a-z_-]+)="([^"]*)"')
_INPUT = re.compile(r"<input\b[^>]*>")


# --- clients -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RP:
    """A registered client as the relying party knows itself, with its token-side calls."""

    base_url: str
    client_id: str
    secret: str | None
    auth_method: str
    redirect_uri: str = REDIRECT_URI
    key: jwk.RSAKey | None = None  # private_key_jwt clients sign their assertions with it

    def post(self, path: str, form: dict[str, str], **kwargs: Any) -> httpx.Response:
        """POST ``form`` to one of our endpoints, authenticated as this client (what ``form``
        itself says about the client wins)."""
        auth = None
        if self.auth_method == "client_secret_basic":
            assert self.secret is not None
            auth = httpx.BasicAuth(self.client_id, self.secret)
        elif self.auth_method == "client_secret_post":
            form = {"client_id": self.client_id, "client_secret": self.secret or "", **form}
        elif self.auth_method == "private_key_jwt":
            form = {
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.assertion(),
                **form,
            }
        else:
            form = {"client_id": self.client_id, **form}
        return httpx.post(self.base_url + path, data=form, auth=auth, timeout=30, **kwargs)

    def assertion(self, key: jwk.RSAKey | None = None, **claims: Any) -> str:
        """An RFC 7523 client assertion for the token endpoint; ``claims`` override (None
        drops one)."""
        now = int(time.time())  # authlib checks assertions against the wall clock
        body = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.base_url + "/oauth2/token",
            "jti": secrets.token_urlsafe(16),
            "iat": now,
            "exp": now + 60,
        } | claims
        signer = key or self.key
        assert signer is not None
        header = {"alg": "RS256", "kid": signer.kid}
        return jwt.encode(header, {k: v for k, v in body.items() if v is not None}, signer)

    def exchange(self, code: str, verifier: str | None, **extra: str) -> httpx.Response:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri}
        if verifier is not None:
            form["code_verifier"] = verifier
        return self.post("/oauth2/token", form | extra)

    def refresh(self, refresh_token: str, **extra: str) -> httpx.Response:
        return self.post(
            "/oauth2/token", {"grant_type": "refresh_token", "refresh_token": refresh_token} | extra
        )

    def revoke(self, token: str, hint: str | None = None) -> httpx.Response:
        return self.post("/oauth2/revoke", _token_form(token, hint))

    def introspect(self, token: str, hint: str | None = None) -> httpx.Response:
        return self.post("/oauth2/introspect", _token_form(token, hint))


def _token_form(token: str, hint: str | None) -> dict[str, str]:
    return {"token": token, **({"token_type_hint": hint} if hint else {})}


def register(
    app: Flask, base_url: str, name: str = "Test RP", *, first_party: bool = True, **options: Any
) -> RP:
    """Register a client through the service, as ``bascule clients create`` does; first-party
    (no consent page) and confidential with ``client_secret_basic`` unless told otherwise.
    ``auth_method="private_key_jwt"`` makes it a key pair and registers the public half."""
    options.setdefault("redirect_uris", [REDIRECT_URI])
    options.setdefault("post_logout_redirect_uris", [POST_LOGOUT_REDIRECT_URI])
    key = None
    if options.get("auth_method") == "private_key_jwt":
        key = jwk.RSAKey.generate_key(2048, auto_kid=True)
        options["jwks"] = {"keys": [key.as_dict(private=False)]}
    created = clients.create_client(name, first_party=first_party, **options)
    db.session.commit()
    return RP(base_url, created.client.id, created.secret, created.client.auth_method, key=key)


# --- the authorization request -------------------------------------------------------------


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass
class AuthRequest:
    """One authorization request: its parameters and the PKCE verifier kept by the client."""

    params: dict[str, str]
    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def state(self) -> str:
        return self.params["state"]

    @property
    def nonce(self) -> str:
        return self.params["nonce"]


def auth_request(rp: RP, **overrides: str | None) -> AuthRequest:
    """A well-formed code + PKCE (S256) request with state and nonce; an override of None
    leaves that parameter out."""
    request = AuthRequest({})
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": rp.client_id,
        "redirect_uri": rp.redirect_uri,
        "scope": SCOPE,
        "state": secrets.token_urlsafe(12),
        "nonce": secrets.token_urlsafe(12),
        "code_challenge": s256(request.verifier),
        "code_challenge_method": "S256",
    }
    params |= overrides
    request.params = {k: v for k, v in params.items() if v is not None}
    return request


def leaves_idp(response: httpx.Response) -> bool:
    """A redirect away from the IdP (to the client), as opposed to one of our own pages."""
    if response.status_code not in (302, 303):
        return False
    target = urlsplit(response.headers["location"]).netloc
    return bool(target) and target != response.request.url.netloc.decode()


def callback(response: httpx.Response, rp: RP | None = None) -> dict[str, str]:
    """The parameters of a redirect to the client; each must appear once."""
    assert response.status_code in (302, 303), (response.status_code, response.text[:500])
    location = response.headers["location"]
    if rp is not None:
        assert location.split("?", 1)[0] == rp.redirect_uri, location
    found = parse_qs(urlsplit(location).query, keep_blank_values=True)
    assert all(len(values) == 1 for values in found.values()), location
    return {k: v[0] for k, v in found.items()}


def error_redirect(response: httpx.Response, rp: RP, request: AuthRequest) -> str:
    """The ``error`` of an authorization error sent back to the client, which must carry the
    state and name us (RFC 9207), and no code."""
    answer = callback(response, rp)
    assert answer.get("state") == request.state, answer
    assert answer.get("iss") == rp.base_url, answer
    assert "code" not in answer, answer
    return answer["error"]


def assert_error_page(response: httpx.Response) -> None:
    """Our own error page, and no redirect: the client or redirect URI is not to be trusted."""
    assert response.status_code == 400, (response.status_code, response.headers)
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert "This sign-in request cannot be used" in response.text


def forms(page: str) -> list[tuple[str, dict[str, str]]]:
    """Each form on ``page``: its action and its hidden and prefilled inputs, unescaped."""
    found = []
    for form in _FORM.findall(page):
        action = html.unescape(dict(_ATTRIBUTE.findall(form.split(">", 1)[0])).get("action", ""))
        fields = {}
        for tag in _INPUT.findall(form):
            attributes = {k: html.unescape(v) for k, v in _ATTRIBUTE.findall(tag)}
            if "name" in attributes:
                fields[attributes["name"]] = attributes.get("value", "")
        found.append((action, fields))
    return found


def is_consent_page(response: httpx.Response) -> bool:
    return response.status_code == 200 and any(
        action == "/oauth2/authorize/consent" for action, _ in forms(response.text)
    )


def answer_consent(browser: httpx.Client, page: httpx.Response, decision: str) -> httpx.Response:
    [(action, fields)] = [f for f in forms(page.text) if f[0] == "/oauth2/authorize/consent"]
    return browser.post(action, data=fields | {"decision": decision})


def navigate(
    browser: httpx.Client,
    response: httpx.Response,
    *,
    email: str = JANE,
    password: str = STRONG_PASSWORD,
    consent: str | None = "allow",
) -> httpx.Response:
    """Go on as a browser with a user at it: follow our redirects, fill in the sign-in (or
    re-authentication) form, answer the consent page with ``consent`` (None: stop there), until
    a redirect leaves the IdP or a page asks for something else. Returns that last response."""
    for _ in range(MAX_HOPS):
        if leaves_idp(response):
            return response
        if response.status_code in (302, 303):
            response = browser.get(response.headers["location"])
            continue
        if is_consent_page(response) and consent is not None:
            response = answer_consent(browser, response, consent)
            continue
        login = [f for f in forms(response.text) if f[0] == "/login"]
        if response.status_code != 200 or not login:
            return response
        [(action, fields)] = login
        response = browser.post(action, data=fields | {"email": email, "password": password})
    raise AssertionError(f"more than {MAX_HOPS} hops: {response.status_code}")


def authorize(browser: httpx.Client, request: AuthRequest, **user: Any) -> httpx.Response:
    """GET the authorization endpoint with ``request`` and go on as :func:`navigate` does."""
    return navigate(browser, browser.get("/oauth2/authorize", params=request.params), **user)


@dataclass(frozen=True)
class Tokens:
    """A token response, with the request that led to it."""

    body: dict[str, Any]
    request: AuthRequest
    headers: httpx.Headers

    @property
    def access(self) -> str:
        return str(self.body["access_token"])

    @property
    def refresh(self) -> str:
        return str(self.body["refresh_token"])

    @property
    def id_token(self) -> str:
        return str(self.body["id_token"])


def code_for(browser: httpx.Client, rp: RP, request: AuthRequest, **user: Any) -> str:
    """Run the front channel to its end and return the code (state and iss checked)."""
    answer = callback(authorize(browser, request, **user), rp)
    assert answer.get("state") == request.state, answer
    assert answer.get("iss") == rp.base_url, answer
    assert "code" in answer, answer
    return answer["code"]


def sign_in_tokens(
    browser: httpx.Client, rp: RP, request: AuthRequest | None = None, **user: Any
) -> Tokens:
    """The whole code flow: authorization, sign-in as needed, code exchange."""
    request = request or auth_request(rp)
    code = code_for(browser, rp, request, **user)
    response = rp.exchange(code, request.verifier)
    assert response.status_code == 200, response.text
    return Tokens(response.json(), request, response.headers)


# --- the resource side ---------------------------------------------------------------------


def userinfo(base_url: str, access_token: str) -> httpx.Response:
    return httpx.get(
        base_url + "/oauth2/userinfo",
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=30,
    )


def assert_invalid_token(response: httpx.Response) -> None:
    """RFC 6750 section 3.1: 401 with a Bearer challenge naming invalid_token."""
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["error"] == "invalid_token"


def oauth_error(response: httpx.Response, status: int = 400) -> str:
    """The ``error`` of a JSON error answer from the token-side endpoints."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    return str(response.json()["error"])


def jwks(base_url: str) -> jwk.KeySet:
    response = httpx.get(base_url + "/oauth2/jwks", timeout=30)
    assert response.status_code == 200
    return jwk.KeySet.import_key_set(response.json())


def verify(base_url: str, token: str) -> jwt.Token:
    """A JWT checked the way a relying party does: against the published JWKS only."""
    return jwt.decode(token, jwks(base_url), algorithms=["RS256", "ES256"])


# --- the audit log -------------------------------------------------------------------------


def audit_events(name: str) -> list[AuditEvent]:
    """What the server committed for ``name``, oldest first (our own transaction ended first,
    so the server's commits are seen)."""
    db.session.rollback()
    query = select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.seq)
    return list(db.session.scalars(query))
