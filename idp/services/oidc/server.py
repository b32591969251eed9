"""authlib's authorization server, wired to our clients, codes, grants and tokens.

authlib parses and validates the protocol (parameters, client authentication, redirect URI
matching, error responses); the decisions and the state are ours (tokens.py). Where authlib's
defaults are weaker than we want, this module overrides them:

- PKCE: S256 only (``plain``, and a missing method that would mean ``plain``, are refused),
  and required for every client that says so (all, by default), not only public ones.
- The token response is built by us, so refresh rotation, reuse detection, the ID token's
  ``auth_time``/``amr``/``sid`` and the audit all come from one place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    ClientMixin,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    RefreshTokenGrant,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9207 import IssuerParameter
from flask import Flask
from joserfc import jwk

from idp.common import signing
from idp.models.oidc import AuthorizationCode, OAuthClient
from idp.runtime import runtime
from idp.services import audit
from idp.services.audit import Actor, Origin
from idp.services.oidc import claims, clients, tokens
from idp.services.oidc.tokens import Refresh, Subject

TOKEN_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
CONFIDENTIAL_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
JTI_PREFIX = "oidc:client-assertion:"
MAX_NONCE = 512  # AuthorizationCode.nonce


def _origin_of(request: OAuth2Request) -> Origin:
    return getattr(request, "bascule_origin", audit.CLI)


class Client(ClientMixin):  # type: ignore[misc]
    """authlib's view of one of our clients."""

    def __init__(self, model: OAuthClient) -> None:
        self.model = model

    def get_client_id(self) -> str:
        return self.model.id

    def get_default_redirect_uri(self) -> None:
        return None  # OpenID Connect requires redirect_uri in every request

    def get_allowed_scope(self, scope: str | None) -> str:
        # Each once: a scope repeated a thousand times must not outgrow the scope columns.
        return " ".join(dict.fromkeys(s for s in (scope or "").split() if s in claims.SCOPES))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.model.redirect_uris  # exact match, no prefixes

    def check_client_secret(self, client_secret: str) -> bool:
        return clients.check_secret(self.model, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.model.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.model.grant_types


class Code:
    """authlib's view of a stored authorization code."""

    def __init__(self, row: AuthorizationCode) -> None:
        self.row = row
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope


class S256Only(CodeChallenge):  # type: ignore[misc]
    SUPPORTED_CODE_CHALLENGE_METHOD = ("S256",)
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        client: Client = grant.request.client
        if client.model.require_pkce and not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge (S256).")
        if data.get("code_challenge") and data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


def _issue(
    client: OAuthClient,
    scope: str,
    subject: Subject | None,
    *,
    grant_id: str | None,
    refresh_token: str | None,
    nonce: str | None = None,
) -> dict[str, Any]:
    access, _ = tokens.access_token(client, scope, subject=subject, grant_id=grant_id)
    body: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": tokens.ACCESS_TOKEN_SECONDS,
        "scope": scope,
    }
    if refresh_token:
        body["refresh_token"] = refresh_token
    if subject is not None and "openid" in scope.split():
        body["id_token"] = tokens.id_token(client, subject, scope, nonce=nonce, access=access)
    return body


class CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS

    def validate_authorization_request(self) -> str:
        redirect_uri: str = super().validate_authorization_request()
        nonce = self.request.payload.data.get("nonce")
        if nonce and len(nonce) > MAX_NONCE:  # kept with the code: longer would not fit
            raise InvalidRequestError("nonce is too long.", redirect_uri=redirect_uri)
        return redirect_uri

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        tokens.save_code(
            code,
            request.client.model,
            request.user,
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope,
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
        )

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        row = tokens.find_code(code, client.model, _origin_of(self.request))
        return Code(row) if row is not None else None

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client: OAuthClient = self.request.client.model
        row: AuthorizationCode = self.request.authorization_code.row
        if not tokens.consume_code(row):
            raise InvalidGrantError("The code has been used.")
        subject = tokens.subject_from_code(row)
        if subject is None:
            raise InvalidGrantError("The account or session behind this code has ended.")
        grant = tokens.open_grant(client, subject, row.scope)
        row.grant_id = grant.id
        refresh = tokens.new_refresh_token(grant) if "refresh_token" in client.grant_types else None
        body = _issue(
            client, row.scope, subject, grant_id=grant.id, refresh_token=refresh, nonce=row.nonce
        )
        _audit_issue(self.request, "oidc.token.issue", client, subject, grant.id)
        return 200, body, self.TOKEN_RESPONSE_HEADER


class RefreshGrant(RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def _validate_request_token(self, client: Client) -> Refresh:
        token = self.request.form.get("refresh_token")
        if not token:
            raise InvalidRequestError("Missing 'refresh_token' in request.")
        found = tokens.find_refresh_token(token, client.model, _origin_of(self.request))
        if found is None:
            raise InvalidGrantError("The refresh token is not valid.")
        return found

    def _validate_token_scope(self, token: Refresh) -> None:
        asked = set((self.request.payload.scope or "").split())
        if not asked.issubset(token.grant.scope.split()):
            raise InvalidScopeError("A refresh cannot widen the scope.")

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client: OAuthClient = self.request.client.model
        refresh: Refresh = self.request.refresh_token
        successor = tokens.rotate(refresh)
        if successor is None:
            raise InvalidGrantError("The refresh token has been used.")
        subject = refresh.subject()
        scope = self.request.payload.scope or refresh.grant.scope
        body = _issue(client, scope, subject, grant_id=refresh.grant.id, refresh_token=successor)
        _audit_issue(self.request, "oidc.token.refresh", client, subject, refresh.grant.id)
        return 200, body, self.TOKEN_RESPONSE_HEADER


class ClientGrant(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client: OAuthClient = self.request.client.model
        scope = " ".join(
            s for s in (self.request.payload.scope or "").split() if s not in {"openid"}
        )
        if any(s not in claims.SCOPES for s in scope.split()):
            raise InvalidScopeError()
        body = _issue(client, scope, None, grant_id=None, refresh_token=None)
        audit.record(
            "oidc.token.issue",
            actor=Actor(email=f"client:{client.id}"),
            target=client.id,
            origin=_origin_of(self.request),
            details={"grant_type": "client_credentials"},
        )
        return 200, body, self.TOKEN_RESPONSE_HEADER


def _audit_issue(
    request: OAuth2Request, event: str, client: OAuthClient, subject: Subject, grant_id: str
) -> None:
    audit.record(
        event,
        actor=Actor(subject.user.id, subject.user.email),
        org_id=subject.org_id,
        target=client.id,
        origin=_origin_of(request),
        details={"grant_id": grant_id, "grant_type": request.payload.grant_type},
    )


class PrivateKeyJwt(JWTBearerClientAssertion):  # type: ignore[misc]
    """RFC 7523 client authentication; each assertion's ``jti`` is accepted once."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def get_audiences(self) -> list[str]:
        issuer = runtime().settings.issuer
        return [issuer, issuer + "/oauth2/token"]

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        ttl = max(60, int(claims.get("exp", 0)) - int(runtime().clock()) + 120)
        return runtime().store.add(JTI_PREFIX + str(jti)[:200], "1", ttl)

    def resolve_client_public_key(self, client: Client) -> jwk.KeySet:
        return signing.key_set(client.model.jwks or {"keys": []})


class _TokenLookup:
    """A token presented at revocation or introspection: an access token or a refresh token."""

    def __init__(
        self, client_id: str, access: tokens.AccessToken | None, refresh: Refresh | None
    ) -> None:
        self.client_id = client_id
        self.access = access
        self.refresh = refresh

    def check_client(self, client: Client) -> bool:
        return client.model.id == self.client_id


def _lookup(request: OAuth2Request, client: Client) -> _TokenLookup | None:
    token, hint = request.form["token"], request.form.get("token_type_hint")
    if hint != "refresh_token":
        access = tokens.check_access_token(token)
        if access is not None:
            return _TokenLookup(str(access.claims.get("client_id")), access, None)
    found = tokens.find_refresh_token(token, client.model, _origin_of(request))
    if found is not None:
        return _TokenLookup(found.grant.client_id, None, found)
    return None


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = TOKEN_AUTH_METHODS

    def authenticate_token(self, request: OAuth2Request, client: Client) -> _TokenLookup | None:
        self.check_params(request, client)
        found = _lookup(request, client)
        # A token of another client is left alone and, as RFC 7009 asks, not reported.
        return found if found is not None and found.check_client(client) else None

    def revoke_token(self, token: _TokenLookup, request: OAuth2Request) -> None:
        if token.refresh is not None:
            tokens.revoke_grant(
                token.refresh.grant.id, "client_revoked", origin=_origin_of(request)
            )
        elif token.access is not None:
            tokens.revoke_access_token(token.access)
            audit.record(
                "oidc.token.revoke",
                actor=Actor(str(token.access.claims.get("sub"))),
                target=token.client_id,
                origin=_origin_of(request),
                details={"jti": token.access.claims.get("jti")},
            )


class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS

    def query_token(self, token: str, token_type_hint: str | None) -> Any:
        raise NotImplementedError  # authenticate_token below does the lookup

    def authenticate_token(self, request: OAuth2Request, client: Client) -> _TokenLookup | None:
        self.check_params(request, client)
        found = _lookup(request, client)
        # Replacing authlib's lookup must keep its permission check: a token the client may
        # not see is reported as not active (RFC 7662 2.2), not described.
        if found is None or not self.check_permission(found, client, request):
            return None
        return found

    def check_permission(self, token: _TokenLookup, client: Client, request: Any) -> bool:
        # A client may introspect what was issued to it; the gateway (first party) any token.
        return client.model.first_party or token.check_client(client)

    def create_introspection_payload(self, token: _TokenLookup | None) -> dict[str, Any]:
        if token is None:
            return {"active": False}
        if token.access is not None:
            found = token.access.claims
            return {"active": True, "token_type": "Bearer", **found}
        assert token.refresh is not None
        grant = token.refresh.grant
        return {
            "active": True,
            "token_type": "refresh_token",
            "client_id": grant.client_id,
            "sub": grant.user_id,
            "scope": grant.scope,
            "exp": int(grant.expires_at.timestamp()),
            "iss": runtime().settings.issuer,
        }


class Server(AuthorizationServer):  # type: ignore[misc]
    """One per app; clients are looked up per request, never cached."""

    def __init__(self, origin: Callable[[], Origin]) -> None:
        super().__init__()
        self._origin = origin

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        oauth_request = super().create_oauth2_request(request)
        oauth_request.bascule_origin = self._origin()
        return oauth_request

    def query_client(self, client_id: str) -> Client | None:
        model = clients.get(client_id)
        return Client(model) if model is not None else None

    def authenticate_client(
        self, request: OAuth2Request, methods: Any, endpoint: str = "token"
    ) -> Client:
        try:
            return super().authenticate_client(request, methods, endpoint)  # type: ignore[no-any-return]
        except UnicodeDecodeError:
            # authlib decodes a Basic header as UTF-8 unguarded: bytes that are not UTF-8 are
            # a client that fails to authenticate, not a server error.
            raise InvalidClientError(
                status_code=401, description="The client credentials are malformed."
            ) from None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Our grants persist what they issue themselves."""

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No listeners: the audit log is written by the grants."""


class Issuer(IssuerParameter):  # type: ignore[misc]
    """RFC 9207: every authorization response names us, against mix-up attacks."""

    def get_issuer(self) -> str:
        return runtime().settings.issuer


def build(app: Flask, origin: Callable[[], Origin]) -> Server:
    """The server for ``app``; ``origin`` tells who is asking (IP, user agent) for the audit."""
    server = Server(origin)
    server.init_app(app)
    server.scopes_supported = list(claims.SCOPES)
    server.register_grant(CodeGrant, [S256Only(required=True)])
    server.register_grant(RefreshGrant)
    server.register_grant(ClientGrant)
    server.register_client_auth_method(PrivateKeyJwt.CLIENT_AUTH_METHOD, PrivateKeyJwt())
    server.register_endpoint(Revocation)
    server.register_endpoint(Introspection)
    server.register_extension(Issuer())
    return server
