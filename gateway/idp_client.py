"""The gateway as a client of the IdP: OpenID Connect sign-in (code flow with PKCE, ID token
checked against the JWKS), the user's permission set when the cached one is stale, and the
audit trail of its decisions."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from joserfc import jwk

from gateway.config import CLIENT_ID, GatewayConfig
from idp.common.signing import InvalidToken, key_set, verify

JWKS_REFRESH_SECONDS = 300
LEEWAY_SECONDS = 30


class IdpError(RuntimeError):
    """The IdP refused or could not be reached; the request fails closed."""


@dataclass(frozen=True)
class Login:
    """A sign-in in progress: kept server-side under its ``state``."""

    state: str
    nonce: str
    verifier: str

    @classmethod
    def start(cls) -> Login:
        return cls(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48))

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class IdpClient:
    def __init__(self, config: GatewayConfig, http: aiohttp.ClientSession) -> None:
        self.config = config
        self.http = http
        self._discovery: dict[str, Any] | None = None
        self._keys: jwk.KeySet | None = None
        self._keys_at = 0.0
        self.org_id: str | None = None  # the upstream's organisation, learnt from the IdP

    @property
    def _auth(self) -> dict[str, str]:
        """client_secret_basic: both parts form-encoded first (RFC 6749 2.3.1)."""
        pair = f"{quote(CLIENT_ID, safe='')}:{quote(self.config.client_secret, safe='')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}

    @property
    def redirect_uri(self) -> str:
        return self.config.public_url + "/_bascule/callback"

    async def discovery(self) -> dict[str, Any]:
        if self._discovery is None:
            url = self.config.issuer + "/.well-known/openid-configuration"
            self._discovery = await self._json("GET", url)
            if self._discovery.get("issuer") != self.config.issuer:
                raise IdpError("the discovery document names another issuer")
        return self._discovery

    async def authorize_url(self, login: Login, *, prompt: str | None = None) -> str:
        params = {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": self.redirect_uri,
            "scope": "openid email",
            "state": login.state,
            "nonce": login.nonce,
            "code_challenge": login.challenge,
            "code_challenge_method": "S256",
        }
        if prompt:
            params["prompt"] = prompt
        return f"{(await self.discovery())['authorization_endpoint']}?{urlencode(params)}"

    async def sign_in(self, code: str, login: Login) -> tuple[dict[str, Any], str]:
        """Exchange the code; returns the verified ID token's claims and the raw ID token."""
        tokens = await self._json(
            "POST",
            (await self.discovery())["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "code_verifier": login.verifier,
            },
            headers=self._auth,
        )
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise IdpError("the token response has no ID token")
        claims = await self.verified(id_token)
        now = time.time()
        if claims.get("aud") != CLIENT_ID or claims.get("nonce") != login.nonce:
            raise IdpError("the ID token is not for this sign-in")
        if not isinstance(claims.get("exp"), int) or claims["exp"] < now - LEEWAY_SECONDS:
            raise IdpError("the ID token has expired")
        if not claims.get("sid") or not claims.get("sub"):
            raise IdpError("the ID token names no session")
        return claims, id_token

    async def verified(self, token: str) -> dict[str, Any]:
        """Claims of a JWT signed by the IdP (its JWKS refetched once for an unknown key)."""
        for refresh in (False, True):
            try:
                claims = verify(token, await self._key_set(refresh))
            except InvalidToken:
                continue
            if claims.get("iss") != self.config.issuer:
                raise IdpError("the token was issued elsewhere")
            return claims
        raise IdpError("the token's signature does not verify")

    async def _key_set(self, refresh: bool) -> jwk.KeySet:
        stale = time.monotonic() - self._keys_at > JWKS_REFRESH_SECONDS
        if self._keys is None or stale or (refresh and time.monotonic() - self._keys_at > 5):
            self._keys = key_set(await self._json("GET", (await self.discovery())["jwks_uri"]))
            self._keys_at = time.monotonic()
        return self._keys

    async def permissions(self, user_id: str) -> frozenset[str]:
        """The user's permissions in the upstream's organisation, computed by the IdP now
        (which also refreshes the cached copy the next requests read)."""
        answer = await self._json(
            "POST",
            self.config.issuer + "/oauth2/gateway/permissions",
            data={"user_id": user_id, "org": self.config.policy.upstream.org},
            headers=self._auth,
        )
        self.org_id = str(answer["org_id"])
        return frozenset(answer["permissions"])

    async def record(self, events: list[dict[str, Any]]) -> None:
        await self._json(
            "POST",
            self.config.issuer + "/oauth2/gateway/audit",
            json={"events": events},
            headers=self._auth,
        )

    async def logout_url(self, id_token: str) -> str:
        params = {
            "id_token_hint": id_token,
            "post_logout_redirect_uri": self.config.public_url + "/",
        }
        return f"{(await self.discovery())['end_session_endpoint']}?{urlencode(params)}"

    async def _json(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        try:
            async with self.http.request(method, url, allow_redirects=False, **kwargs) as answer:
                body = await answer.json(content_type=None)
                if answer.status != 200 or not isinstance(body, dict):
                    raise IdpError(f"{method} {url}: HTTP {answer.status} {body!r:.200}")
                return body
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise IdpError(f"{method} {url}: {exc}") from exc
