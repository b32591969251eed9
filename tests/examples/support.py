"""What the messaging app needs around it in a test: the IdP's JWKS endpoint on loopback,
assertions signed the way the gateway signs them, and a browser whose requests carry them.

The keys are made fresh in each test run by joserfc; no key material is ever committed.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from flask.testing import FlaskClient
from joserfc import jwk, jwt

GATEWAY_URL = "http://gateway.test:8080"
AUDIENCE = "messaging"
JWKS_PATH = "/oauth2/jwks"
APP_PERMISSIONS = (
    "messages.send",
    "messages.edit",
    "settings.manage",
    "billing.manage",
    "user_data.read",
)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def new_key() -> jwk.ECKey:
    """A fresh P-256 key whose kid is its RFC 7638 thumbprint, as ``bascule init`` makes it."""
    return jwk.ECKey.generate_key("P-256", private=True, auto_kid=True)


def public_jwk(key: jwk.ECKey | jwk.RSAKey, alg: str = "ES256") -> dict[str, Any]:
    return {**key.as_dict(private=False), "alg": alg, "use": "sig"}


def claims(
    *,
    sub: str = "user-alice",
    email: str = "alice@demo.test",
    org: str = "demo",
    permissions: list[str] | tuple[str, ...] = (),
    sid: str = "sid-alice-1",
    lifetime: float = 30,
    now: float | None = None,
) -> dict[str, Any]:
    """The claims the gateway puts in an assertion (DESIGN.md, "Identity sent upstream")."""
    issued = time.time() if now is None else now
    return {
        "iss": GATEWAY_URL,
        "aud": AUDIENCE,
        "sub": sub,
        "email": email,
        "org": org,
        "permissions": list(permissions),
        "sid": sid,
        "iat": int(issued),
        "exp": int(issued + lifetime),
    }


def sign_assertion(
    key: jwk.ECKey,
    *,
    overrides: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    header: dict[str, Any] | None = None,
    **claim_args: Any,
) -> str:
    """An ``X-Bascule-Assertion`` value signed ES256 by ``key``, as the gateway would send it.

    ``claim_args`` go to :func:`claims`; ``overrides`` then replace claims, ``drop`` removes them.
    """
    body = {**claims(**claim_args), **(overrides or {})}
    for name in drop:
        body.pop(name, None)
    protected = {"alg": "ES256", "kid": key.kid, "typ": "JWT", **(header or {})}
    return jwt.encode(protected, body, key)


class JwksServer:
    """The IdP's ``/oauth2/jwks`` on 127.0.0.1, serving ``keys`` and counting fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != JWKS_PATH:
                    self.send_error(404)
                    return
                outer.fetches += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def issuer(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> JwksServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class Browser:
    """One person's requests through the gateway: each carries a freshly signed assertion."""

    def __init__(self, client: FlaskClient, key: jwk.ECKey, **claim_args: Any) -> None:
        self.client = client
        self.key = key
        self.claim_args = claim_args

    def headers(self) -> dict[str, str]:
        return {"X-Bascule-Assertion": sign_assertion(self.key, **self.claim_args)}

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, headers=self.headers(), **kwargs)

    def csrf_token(self) -> str:
        """The token from the inbox's form, as a browser has it (the same on every page of one
        gateway session); read as a sender, since a caller who cannot send sees no form there."""
        sender = {**self.claim_args, "permissions": ["messages.send"]}
        page = self.client.get("/inbox", headers=Browser(self.client, self.key, **sender).headers())
        match = _CSRF.search(page.get_data(as_text=True))
        assert match is not None
        return match.group(1)

    def post(self, path: str, data: dict[str, str], csrf: bool = True, **kwargs: Any) -> Any:
        form = {"csrf_token": self.csrf_token(), **data} if csrf else dict(data)
        headers = {**self.headers(), **kwargs.pop("headers", {})}
        return self.client.post(path, data=form, headers=headers, **kwargs)


def browser(client: FlaskClient, key: jwk.ECKey, *permissions: str, **claim_args: Any) -> Browser:
    return Browser(client, key, permissions=list(permissions), **claim_args)


def text(response: Any) -> str:
    return str(response.get_data(as_text=True))
