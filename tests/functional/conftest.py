"""Fixtures the functional test modules share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from idp.models import User
from tests.oidc_support import RP, register
from tests.support import Browsers, make_user


@pytest.fixture
def browsers(base_url: str) -> Iterator[Browsers]:
    made = Browsers(base_url)
    yield made
    for browser in made.opened:
        browser.close()


@pytest.fixture
def owner(app: Flask) -> User:
    return make_user(app, "olivia@acme.test", role="owner", name="Olivia Owner")


@pytest.fixture
def jane(app: Flask) -> User:
    """A member of acme with a password (tests.support.STRONG_PASSWORD)."""
    return make_user(app)


@pytest.fixture
def rp(app: Flask, base_url: str, jane: User) -> RP:
    """An OIDC client registered on the live IdP, with jane able to sign in to it."""
    return register(app, base_url)
