"""Per test: a fresh messaging app on its own SQLite file, its keys served over loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwk

from examples.messaging.app import create_app
from tests.examples.support import AUDIENCE, GATEWAY_URL, JwksServer, new_key, public_jwk


@pytest.fixture(scope="session")
def gateway_key() -> jwk.ECKey:
    """The gateway's signing key, made for this run only."""
    return new_key()


@pytest.fixture(scope="session")
def idp_key() -> jwk.RSAKey:
    """An RS256 key such as the IdP signs ID tokens with; it shares the JWK set."""
    return jwk.RSAKey.generate_key(2048, private=True, auto_kid=True)


@pytest.fixture(scope="session")
def idp_server() -> Iterator[JwksServer]:
    server = JwksServer().start()
    yield server
    server.close()


@pytest.fixture
def idp(idp_server: JwksServer, gateway_key: jwk.ECKey, idp_key: jwk.RSAKey) -> JwksServer:
    """The IdP's JWKS endpoint holding both keys, its fetch count back at zero."""
    idp_server.keys = [public_jwk(gateway_key), public_jwk(idp_key, "RS256")]
    idp_server.fetches = 0
    return idp_server


@pytest.fixture
def app(idp: JwksServer, tmp_path: Path) -> Flask:
    return create_app(idp.issuer, GATEWAY_URL, AUDIENCE, tmp_path / "messaging.db")


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
