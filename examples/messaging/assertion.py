"""The gateway's identity assertion: the IdP's keys fetched and cached, the JWT and claims checked.

Contract (DESIGN.md, "Identity sent upstream"): the gateway sends ``X-Bascule-Assertion``, a JWT
signed ES256 with the gateway key, which the IdP publishes in its JWK set at
``<issuer>/oauth2/jwks``. Claims: ``iss`` the gateway URL, ``aud`` this upstream's name, ``sub``,
``email``, ``org``, ``permissions`` (a list), ``sid``, ``exp`` at most 60 s after issue.

The plain ``X-Bascule-User``/``-Email``/``-Org``/``-Permissions`` headers are never read here: the
gateway strips incoming ones, but should this app ever be reachable without the gateway (a bind on
the wrong interface), anybody could send them. The signature is what a client cannot forge.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from joserfc import jwk, jwt
from joserfc.errors import JoseError

HEADER = "X-Bascule-Assertion"
ALGORITHM = "ES256"
MAX_LIFETIME = 60  # seconds from now to exp: the contract's bound on a stolen assertion's use
LEEWAY = 5  # seconds of clock difference tolerated between the gateway and this app
MAX_TOKEN_CHARS = 8192  # an assertion is ~600 characters; refuse to parse anything far larger
KEYS_MAX_AGE = 300  # refresh the cached key set this often, so a retired key stops verifying
REFETCH_INTERVAL = 10  # seconds between refetches for unknown kids, and between failed attempts
FETCH_TIMEOUT = 5
MAX_JWKS_BYTES = 1 << 20

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Fetch = Callable[[str], bytes]


class InvalidAssertion(ValueError):
    """No assertion, or one that does not verify; the message says why (for the log only)."""


class KeysUnavailable(RuntimeError):
    """The IdP's key set could not be fetched and none is cached: nothing can be verified."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who the gateway says is calling, read from a verified assertion and nothing else."""

    sub: str
    email: str
    org: str
    permissions: frozenset[str]
    sid: str
    expires_at: float

    def can(self, permission: str) -> bool:
        return permission in self.permissions


def jwks_url(issuer: str) -> str:
    """Where the IdP publishes its keys; only http(s), since urllib would also open file: URLs."""
    url = issuer.rstrip("/") + "/oauth2/jwks"
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"issuer must be an http(s) URL, not {issuer!r}")
    return url


def fetch_url(url: str) -> bytes:
    """The body of ``url``; OSError (which includes HTTP errors) or ValueError when it fails."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 -- scheme checked in jwks_url
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as response:  # noqa: S310 -- same
        body: bytes = response.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError("the key set is larger than 1 MiB")
    return body


def parse_jwks(body: bytes) -> dict[str, jwk.ECKey]:
    """The P-256 signing keys of a JWK set, by ``kid``; keys of other kinds are left out."""
    document = json.loads(body)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK set")
    keys: dict[str, jwk.ECKey] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        usable = (
            entry.get("kty") == "EC"
            and entry.get("crv") == "P-256"
            and entry.get("use", "sig") == "sig"
            and entry.get("alg", ALGORITHM) == ALGORITHM
        )
        if not usable:
            continue  # the IdP's RS256 keys sign ID tokens, never assertions
        try:
            keys[entry["kid"]] = jwk.ECKey.import_key(entry)
        except (JoseError, ValueError, TypeError):
            log.warning("skipping a malformed key %r in the IdP's key set", entry["kid"])
    return keys


class KeyCache:
    """The IdP's key set, fetched on first use and kept; thread-safe.

    It is refreshed after ``KEYS_MAX_AGE``, and at once when an assertion names an unknown
    ``kid`` (the gateway key was rotated). Refetches for unknown kids are at most one per
    ``REFETCH_INTERVAL``, as are attempts after a failure: otherwise a client sending made-up
    ``kid`` values, or an IdP that is down, would have this app hammer the IdP. When a refresh
    fails the keys already held stay in use.
    """

    def __init__(self, url: str, fetch: Fetch = fetch_url, clock: Clock = time.time) -> None:
        self.url = url
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, jwk.ECKey] | None = None
        self._loaded_at = 0.0
        self._attempted_at = float("-inf")
        self._unknown_kid_at = float("-inf")

    def get(self, kid: str) -> jwk.ECKey | None:
        """The key named ``kid``, or None; KeysUnavailable when no key set was ever fetched."""
        with self._lock:  # one fetch at a time; the others wait for its result
            now = self._clock()
            if self._keys is None or now - self._loaded_at >= KEYS_MAX_AGE:
                if now - self._attempted_at >= REFETCH_INTERVAL:
                    self._refresh(now)
            elif kid not in self._keys and now - self._unknown_kid_at >= REFETCH_INTERVAL:
                self._unknown_kid_at = now
                self._refresh(now)
            if self._keys is None:
                raise KeysUnavailable(f"cannot fetch the IdP's keys from {self.url}")
            return self._keys.get(kid)

    def _refresh(self, now: float) -> None:
        self._attempted_at = now
        try:
            keys = parse_jwks(self._fetch(self.url))
        except (OSError, ValueError) as exc:  # json and HTTP errors are subclasses of these
            log.warning("cannot fetch the IdP's keys from %s: %s", self.url, exc)
            return
        self._keys = keys
        self._loaded_at = now


class AssertionVerifier:
    """Turns an ``X-Bascule-Assertion`` value into a Caller, or raises InvalidAssertion."""

    def __init__(
        self, keys: KeyCache, gateway_url: str, audience: str, clock: Clock = time.time
    ) -> None:
        self.keys = keys
        self.issuer = gateway_url.rstrip("/")
        self.audience = audience
        self._clock = clock

    def verify(self, token: str | None) -> Caller:
        if not token:
            raise InvalidAssertion("no assertion: the request did not come through the gateway")
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidAssertion("assertion too large")
        header = _protected_header(token)
        # Only ES256: "none", HS256 with the public key as secret, and the IdP's RS256 keys
        # (which sign ID tokens a client holds) must not get as far as a signature check.
        if header.get("alg") != ALGORITHM:
            raise InvalidAssertion(f"algorithm {header.get('alg')!r} is not {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidAssertion("no key id")
        key = self.keys.get(kid)
        if key is None:
            raise InvalidAssertion(f"unknown key id {kid!r}")
        try:
            claims = dict(jwt.decode(token, key, algorithms=[ALGORITHM]).claims)
        except (JoseError, ValueError, TypeError) as exc:
            raise InvalidAssertion(f"bad signature or token: {exc}") from None
        return self._caller(claims)

    def _caller(self, claims: dict[str, Any]) -> Caller:
        """Check the claims. ``iss`` and ``aud`` matter: the IdP's own tokens verify with the
        same key set, and an assertion for another upstream must not be replayed here."""
        now = self._clock()
        iss = claims.get("iss")
        if not isinstance(iss, str) or iss.rstrip("/") != self.issuer:
            raise InvalidAssertion(f"issuer {iss!r} is not the gateway {self.issuer!r}")
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if self.audience not in audiences:
            raise InvalidAssertion(f"audience {aud!r} is not {self.audience!r}")
        exp = _number(claims, "exp")
        if exp is None:
            raise InvalidAssertion("claim 'exp' missing")
        if now >= exp + LEEWAY:
            raise InvalidAssertion("assertion expired")
        if exp - now > MAX_LIFETIME + LEEWAY:
            raise InvalidAssertion(f"assertion lives longer than {MAX_LIFETIME}s")
        iat = _number(claims, "iat")
        if iat is not None and (iat > now + LEEWAY or exp - iat > MAX_LIFETIME):
            raise InvalidAssertion("assertion issued in the future or for too long")
        nbf = _number(claims, "nbf")
        if nbf is not None and nbf > now + LEEWAY:
            raise InvalidAssertion("assertion not valid yet")
        permissions = claims.get("permissions")
        if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
            raise InvalidAssertion("permissions is not a list of names")
        return Caller(
            sub=_text(claims, "sub"),
            email=_text(claims, "email"),
            org=_text(claims, "org"),
            permissions=frozenset(permissions),
            sid=_text(claims, "sid"),
            expires_at=exp,
        )


def _protected_header(token: str) -> dict[str, Any]:
    """The JWS header, read before any key is chosen; InvalidAssertion if it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidAssertion("not a compact JWS")
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise InvalidAssertion(f"unreadable header: {exc}") from None
    if not isinstance(header, dict):
        raise InvalidAssertion("unreadable header")
    return header


def _text(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidAssertion(f"claim {name!r} missing or empty")
    return value


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    # bool is an int in Python; "exp": true must not pass as 1970-01-01T00:00:01.
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidAssertion(f"claim {name!r} is not a number")
    return float(value)
