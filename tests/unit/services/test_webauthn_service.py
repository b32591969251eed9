"""WebAuthn challenges at the service level: kept in the shared store, taken before checking."""

from __future__ import annotations

import pytest
from flask import Flask

from idp.extensions import db
from idp.services import webauthn_service
from idp.services.webauthn_service import WebAuthnFailed
from tests.soft_authenticator import SoftAuthenticator
from tests.support import make_user


def test_a_challenge_handle_verifies_once_even_if_the_session_kept_it(app: Flask) -> None:
    """Two requests racing with one session both carry the handle; the store lets one through."""
    rt = app.extensions["bascule"]
    rp = webauthn_service.relying_party(rt.settings)
    user = make_user(app)
    key = SoftAuthenticator(rp.origin, rp.id)
    options, handle = webauthn_service.registration_options(rp, rt.store, user, rt.clock())
    webauthn_service.register(rp, rt.store, user, handle, key.create(options), "k", rt.clock())
    db.session.commit()

    options, handle = webauthn_service.authentication_options(rp, rt.store, user, rt.clock())
    answer = key.get(options)
    webauthn_service.authenticate(rp, rt.store, handle, answer, user, rt.clock())
    db.session.commit()
    with pytest.raises(WebAuthnFailed, match="expired"):
        webauthn_service.authenticate(rp, rt.store, handle, answer, user, rt.clock())


def test_a_challenge_is_bound_to_its_ceremony_and_user(app: Flask) -> None:
    rt = app.extensions["bascule"]
    rp = webauthn_service.relying_party(rt.settings)
    jane, bob = make_user(app), make_user(app, email="bob@acme.test")
    key = SoftAuthenticator(rp.origin, rp.id)
    options, handle = webauthn_service.registration_options(rp, rt.store, jane, rt.clock())
    with pytest.raises(WebAuthnFailed, match="expired"):  # Bob cannot finish Jane's ceremony
        webauthn_service.register(rp, rt.store, bob, handle, key.create(options), "k", rt.clock())
    options, handle = webauthn_service.authentication_options(rp, rt.store, None, rt.clock())
    with pytest.raises(WebAuthnFailed, match="expired"):  # a passkey challenge is not a 2FA one
        webauthn_service.authenticate(rp, rt.store, handle, {}, jane, rt.clock())


def test_the_relying_party_comes_from_the_issuer(app: Flask) -> None:
    rp = webauthn_service.relying_party(app.extensions["bascule"].settings)
    assert rp.origin.startswith("http://127.0.0.1:") and rp.id == "127.0.0.1"
