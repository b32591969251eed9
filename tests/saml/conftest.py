"""Fixtures for the SP tests: an organisation connected to a forged corporate IdP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from flask import Flask

from idp.extensions import db
from idp.models import SamlConnection
from idp.services import orgs
from idp.services.authz import operator
from idp.services.saml import connections
from idp.services.saml.connections import Changes
from tests.saml.support import FakeIdp, SamlBrowser
from tests.support import cli_context


@pytest.fixture(scope="session")
def fake_idp() -> FakeIdp:
    return FakeIdp()


def connect(app: Flask, idp: FakeIdp, slug: str = "corp", **changes: object) -> SamlConnection:
    """Connect organisation "acme" (created if needed) to ``idp`` as ``slug``, committed."""
    org = orgs.find("acme") or orgs.create("acme", "Acme")
    values: dict[str, object] = {"domains": ["corp.example"], "group_roles": {"admins": "admin"}}
    values.update(changes)
    conn = connections.create(
        operator(org),
        cli_context(),
        app.extensions["bascule"].keyring,
        slug,
        connections.load_metadata(operator(org), idp.metadata(), None),
        Changes(**values),  # type: ignore[arg-type]
    )
    db.session.commit()
    return conn


@pytest.fixture
def connection(app: Flask, fake_idp: FakeIdp) -> SamlConnection:
    return connect(app, fake_idp)


@pytest.fixture
def saml_browser(
    connection: SamlConnection, base_url: str, browser_client: httpx.Client
) -> Iterator[SamlBrowser]:
    yield SamlBrowser(browser_client, base_url, connection.slug)
