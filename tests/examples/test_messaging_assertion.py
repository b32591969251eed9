"""The messaging app admits a request only with a valid gateway assertion (DESIGN.md, "Identity
sent upstream"): forged, expired, misdirected or incomplete ones, and the plain identity headers
on their own, get the 401 page. Plus the key cache: rotation, rate limit, an IdP that is down.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from joserfc import jwk, jwt

from examples.messaging.app import create_app
from examples.messaging.assertion import (
    KEYS_MAX_AGE,
    REFETCH_INTERVAL,
    AssertionVerifier,
    InvalidAssertion,
    KeyCache,
    KeysUnavailable,
)
from idp.common.clock import FrozenClock
from tests.examples.support import (
    APP_PERMISSIONS,
    AUDIENCE,
    GATEWAY_URL,
    JwksServer,
    browser,
    new_key,
    public_jwk,
    sign_assertion,
    text,
)


def assert_not_admitted(response: Any) -> None:
    assert response.status_code == 401
    assert "through the gateway" in text(response)
    assert GATEWAY_URL in text(response)
    assert response.headers["WWW-Authenticate"].startswith("Bascule-Assertion")
    assert "<form" not in text(response)


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def payload_of(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def owner_token(key: jwk.ECKey, **args: Any) -> str:
    """An assertion that would open every page, were it valid."""
    return sign_assertion(key, permissions=list(APP_PERMISSIONS), **args)


def alg_none(key: jwk.ECKey) -> str:
    return f"{b64({'alg': 'none', 'kid': key.kid})}.{owner_token(key).split('.')[1]}."


def hs256_with_public_key(key: jwk.ECKey) -> str:
    """The old confusion: HMAC keyed with the public key, hoping the verifier takes the alg."""
    secret = jwk.OctKey.import_key(json.dumps(key.as_dict(private=False)).encode())
    return jwt.encode({"alg": "HS256", "kid": key.kid}, payload_of(owner_token(key)), secret)


def without(claim: str) -> Callable[[jwk.ECKey], str]:
    return lambda key: owner_token(key, drop=(claim,))


# Each case: how to make the bad assertion from the gateway's key, and the reason logged for it,
# so that every case is refused for its own reason and not by accident.
BAD_ASSERTIONS: dict[str, tuple[Callable[[jwk.ECKey], str], str]] = {
    "forged by another key": (lambda key: owner_token(new_key()), "unknown key id"),
    "another key claiming our kid": (
        lambda key: owner_token(new_key(), header={"kid": key.kid}),
        "bad signature",
    ),
    "signature cut off": (lambda key: owner_token(key).rsplit(".", 1)[0] + ".", "bad signature"),
    "expired": (lambda key: owner_token(key, now=time.time() - 120), "expired"),
    "lives too long": (lambda key: owner_token(key, lifetime=3600), "lives longer than 60s"),
    "issued in the future": (
        lambda key: owner_token(key, now=time.time() + 40, lifetime=10),
        "issued in the future",
    ),
    "wrong audience": (
        lambda key: owner_token(key, overrides={"aud": "billing-app"}),
        "audience 'billing-app'",
    ),
    "wrong issuer": (
        lambda key: owner_token(key, overrides={"iss": "http://evil.test"}),
        "issuer 'http://evil.test'",
    ),
    "alg none": (alg_none, "algorithm 'none'"),
    "HS256 keyed with the public key": (hs256_with_public_key, "algorithm 'HS256'"),
    "permissions as a string": (
        lambda key: owner_token(key, overrides={"permissions": "messages.send billing.manage"}),
        "permissions is not a list",
    ),
    "exp as a boolean": (lambda key: owner_token(key, overrides={"exp": True}), "'exp'"),
    "empty sub": (lambda key: owner_token(key, sub=""), "'sub'"),
    "not a JWT": (lambda key: "not-a-jwt", "not a compact JWS"),
    "three garbage parts": (lambda key: "a.b.c", "unreadable header"),
    "without iss": (without("iss"), "issuer None"),
    "without aud": (without("aud"), "audience None"),
    "without exp": (without("exp"), "'exp' missing"),
    **{f"without {c}": (without(c), f"'{c}'") for c in ("sub", "email", "org", "sid")},
    "without permissions": (without("permissions"), "permissions is not a list"),
}


def test_no_assertion_is_refused(client: FlaskClient) -> None:
    assert_not_admitted(client.get("/inbox"))


@pytest.mark.parametrize("case", list(BAD_ASSERTIONS))
def test_bad_assertion_is_refused(
    client: FlaskClient, gateway_key: jwk.ECKey, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    make, reason = BAD_ASSERTIONS[case]
    with caplog.at_level(logging.WARNING, logger="examples.messaging"):
        response = client.get("/billing", headers={"X-Bascule-Assertion": make(gateway_key)})
    assert_not_admitted(response)
    assert reason in caplog.text


def test_rs256_token_from_the_idp_key_set_is_refused(
    client: FlaskClient, idp_key: jwk.RSAKey
) -> None:
    """The IdP's own tokens verify against the same key set; one must not pass as an assertion."""
    token = jwt.encode(
        {"alg": "RS256", "kid": idp_key.kid}, payload_of(owner_token(new_key())), idp_key
    )
    assert_not_admitted(client.get("/inbox", headers={"X-Bascule-Assertion": token}))


def test_valid_assertion_is_admitted(client: FlaskClient, gateway_key: jwk.ECKey) -> None:
    """The counterpart of the cases above: the same claims, signed right, get in."""
    response = client.get("/billing", headers={"X-Bascule-Assertion": owner_token(gateway_key)})
    assert response.status_code == 200


def test_spoofed_identity_headers_are_ignored(client: FlaskClient, gateway_key: jwk.ECKey) -> None:
    spoof = {
        "X-Bascule-User": "user-admin",
        "X-Bascule-Email": "admin@demo.test",
        "X-Bascule-Org": "demo",
        "X-Bascule-Permissions": " ".join(APP_PERMISSIONS),
    }
    for path in ("/", "/billing", "/members/export.json"):
        assert_not_admitted(client.get(path, headers=spoof))
    # Beside a member's real assertion, the plain headers add nothing either.
    member = {**spoof, "X-Bascule-Assertion": sign_assertion(gateway_key)}
    assert client.get("/billing", headers=member).status_code == 403
    assert "admin@demo.test" not in text(client.get("/inbox", headers=member))


def test_rotated_gateway_key_is_fetched_once(
    client: FlaskClient, gateway_key: jwk.ECKey, idp: JwksServer
) -> None:
    assert browser(client, gateway_key).get("/inbox").status_code == 200
    assert browser(client, gateway_key).get("/inbox").status_code == 200
    assert idp.fetches == 1  # fetched once, then cached

    rotated = new_key()
    idp.keys.append(public_jwk(rotated))
    assert browser(client, rotated).get("/inbox").status_code == 200
    assert idp.fetches == 2  # an unknown kid: one refetch

    # Made-up kids do not make the app hammer the IdP: no refetch within the interval.
    for _ in range(5):
        assert_not_admitted(browser(client, new_key()).get("/inbox"))
    assert idp.fetches == 2


def test_unreachable_idp_is_503_not_open(tmp_path: Path, gateway_key: jwk.ECKey) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(f"http://127.0.0.1:{port}", GATEWAY_URL, data_path=tmp_path / "m.db")
    response = browser(app.test_client(), gateway_key, *APP_PERMISSIONS).get("/inbox")
    assert response.status_code == 503
    assert "Cannot check who you are" in text(response)


# --- the key cache, on an injected clock ---------------------------------------------------------


class FakeIdP:
    """A JWKS fetch that serves ``keys`` or fails, and counts calls."""

    def __init__(self, *keys: jwk.ECKey) -> None:
        self.keys: list[dict[str, Any]] = [public_jwk(k) for k in keys]
        self.down = False
        self.calls = 0

    def __call__(self, url: str) -> bytes:
        self.calls += 1
        if self.down:
            raise ConnectionRefusedError("IdP down")
        return json.dumps({"keys": self.keys}).encode()


def test_key_set_is_refreshed_after_its_max_age(gateway_key: jwk.ECKey) -> None:
    idp, clock = FakeIdP(gateway_key), FrozenClock()
    cache = KeyCache("http://idp.test/oauth2/jwks", idp, clock)
    assert cache.get(str(gateway_key.kid)) is not None
    clock.advance(KEYS_MAX_AGE - 1)
    assert cache.get(str(gateway_key.kid)) is not None
    assert idp.calls == 1
    idp.keys = []  # the IdP retired the key
    clock.advance(1)
    assert cache.get(str(gateway_key.kid)) is None
    assert idp.calls == 2


def test_unknown_kids_refetch_at_most_once_per_interval(gateway_key: jwk.ECKey) -> None:
    idp, clock = FakeIdP(gateway_key), FrozenClock()
    cache = KeyCache("http://idp.test/oauth2/jwks", idp, clock)
    cache.get(str(gateway_key.kid))
    for _ in range(3):
        assert cache.get("made-up") is None
    assert idp.calls == 2
    clock.advance(REFETCH_INTERVAL)
    assert cache.get("made-up") is None
    assert idp.calls == 3


def test_idp_down_keeps_known_keys_and_is_not_hammered(gateway_key: jwk.ECKey) -> None:
    idp, clock = FakeIdP(gateway_key), FrozenClock()
    cache = KeyCache("http://idp.test/oauth2/jwks", idp, clock)
    cache.get(str(gateway_key.kid))
    idp.down = True
    clock.advance(KEYS_MAX_AGE)
    for _ in range(3):
        assert cache.get(str(gateway_key.kid)) is not None  # stale but still the IdP's keys
    assert idp.calls == 2


def test_idp_down_from_the_start_fails_closed(gateway_key: jwk.ECKey) -> None:
    idp, clock = FakeIdP(gateway_key), FrozenClock()
    idp.down = True
    cache = KeyCache("http://idp.test/oauth2/jwks", idp, clock)
    verifier = AssertionVerifier(cache, GATEWAY_URL, AUDIENCE, clock)
    for _ in range(3):
        with pytest.raises(KeysUnavailable):
            verifier.verify(sign_assertion(gateway_key, now=clock()))
    assert idp.calls == 1
    idp.down = False
    clock.advance(REFETCH_INTERVAL)
    assert verifier.verify(sign_assertion(gateway_key, now=clock())).email == "alice@demo.test"


def test_unusable_keys_in_the_set_are_left_out(gateway_key: jwk.ECKey) -> None:
    idp = FakeIdP(gateway_key)
    broken = {"kty": "EC", "crv": "P-256", "kid": "broken", "x": "AAAA", "y": "AAAA"}
    encryption = {**public_jwk(new_key()), "use": "enc", "kid": "enc"}
    idp.keys += [broken, encryption, {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}]
    cache = KeyCache("http://idp.test/oauth2/jwks", idp, FrozenClock())
    assert cache.get(str(gateway_key.kid)) is not None
    assert [cache.get(kid) for kid in ("broken", "enc", "hmac")] == [None, None, None]


def test_clock_skew_within_the_leeway_is_accepted(gateway_key: jwk.ECKey) -> None:
    clock = FrozenClock()
    cache = KeyCache("http://idp.test/oauth2/jwks", FakeIdP(gateway_key), clock)
    verifier = AssertionVerifier(cache, GATEWAY_URL + "/", AUDIENCE, clock)
    token = sign_assertion(gateway_key, now=clock() - 30, lifetime=30)
    assert verifier.verify(token).sid == "sid-alice-1"  # exp is now: inside the leeway
    clock.advance(10)
    with pytest.raises(InvalidAssertion, match="expired"):
        verifier.verify(token)
