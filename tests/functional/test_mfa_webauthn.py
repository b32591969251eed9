"""Security keys and passkeys through the real HTTP stack, with a software authenticator that
can also misbehave: stale sign counts, reused challenges, foreign origins, no user verification.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select

from idp.extensions import db
from idp.models import AuditEvent, WebAuthnCredential
from idp.services import sessions
from tests.mfa_support import (
    is_signed_in,
    json_post,
    page_csrf,
    password_step,
    register_key,
    sign_out,
)
from tests.soft_authenticator import SoftAuthenticator, b64url
from tests.support import STRONG_PASSWORD, make_user, sign_in

JANE = "jane@acme.test"


@pytest.fixture
def key(base_url: str) -> SoftAuthenticator:
    return SoftAuthenticator(origin=base_url, rp_id=urlsplit(base_url).hostname or "")


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30, headers={"Accept": "text/html"}) as made:
        yield made


def _events(name: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.seq)
        )
    )


def _with_key(app, client: httpx.Client, key: SoftAuthenticator) -> None:  # type: ignore[no-untyped-def]
    make_user(app)
    sign_in(client, JANE, STRONG_PASSWORD)
    registered = register_key(client, key, "Blue key")
    assert registered.status_code == 200, registered.text
    assert registered.json() == {"redirect": "/account/2fa/recovery-codes"}
    sign_out(client)


def _second_step_options(client: httpx.Client) -> tuple[dict[str, Any], str]:
    assert password_step(client, JANE) == "/login/2fa"
    page = client.get("/login/2fa").text
    assert "Use your security key" in page
    csrf = page_csrf(page)
    options = json_post(client, "/login/2fa/webauthn/options", {}, csrf)
    assert options.status_code == 200, options.text
    return options.json()["publicKey"], csrf


def test_register_name_rename_and_list_keys(
    app, client: httpx.Client, key: SoftAuthenticator, clock
) -> None:
    make_user(app)
    sign_in(client, JANE, STRONG_PASSWORD)
    assert register_key(client, key, "Blue key").status_code == 200
    codes_page = client.get("/account/2fa/recovery-codes")
    assert codes_page.text.count("<li><code>") == 10  # the first factor brings recovery codes
    clock.advance(60)
    second = register_key(client, key, "  Backup key\x00 ")
    assert second.json() == {"redirect": "/account/2fa?done=key-added"}  # no new codes
    keys = db.session.scalars(select(WebAuthnCredential).order_by(WebAuthnCredential.id)).all()
    assert [k.name for k in keys] == ["Blue key", "Backup key"]
    assert keys[1].created_at.timestamp() == pytest.approx(clock(), abs=1)
    page = client.get("/account/2fa").text
    assert 'value="Blue key"' in page and 'value="Backup key"' in page and "never" in page

    from tests.support import post_form

    renamed = post_form(client, f"/account/2fa/webauthn/{keys[0].id}/rename", {"name": "Red"}, page)
    assert renamed.headers["location"] == "/account/2fa?done=key-renamed"
    removed = post_form(client, f"/account/2fa/webauthn/{keys[1].id}/remove", {}, page)
    assert removed.headers["location"] == "/account/2fa?done=key-removed"
    db.session.expire_all()
    assert [k.name for k in db.session.scalars(select(WebAuthnCredential))] == ["Red"]
    assert [e.outcome for e in _events("mfa.webauthn.register")] == ["success", "success"]
    assert len(_events("mfa.webauthn.rename")) == len(_events("mfa.webauthn.remove")) == 1


def test_another_users_key_cannot_be_renamed_or_removed(
    app, client: httpx.Client, key: SoftAuthenticator, base_url: str
) -> None:
    _with_key(app, client, key)
    make_user(app, email="bob@acme.test")
    with httpx.Client(base_url=base_url, headers={"Accept": "text/html"}) as bob:
        sign_in(bob, "bob@acme.test", STRONG_PASSWORD)
        from tests.support import post_form

        page = bob.get("/account/2fa").text
        jane_key = db.session.scalar(select(WebAuthnCredential.id))
        assert (
            post_form(bob, f"/account/2fa/webauthn/{jane_key}/remove", {}, page).status_code == 400
        )
        assert (
            post_form(
                bob, f"/account/2fa/webauthn/{jane_key}/rename", {"name": "x"}, page
            ).status_code
            == 400
        )
    assert db.session.scalar(select(WebAuthnCredential.name)) == "Blue key"


def test_password_then_security_key(app, client: httpx.Client, key: SoftAuthenticator) -> None:
    _with_key(app, client, key)
    options, csrf = _second_step_options(client)
    assert options["userVerification"] == "preferred"
    assert [c["id"] for c in options["allowCredentials"]] == [b64url(key.keys[0].credential_id)]
    assert not is_signed_in(client)
    verified = json_post(
        client, "/login/2fa/webauthn/verify", {"credential": key.get(options)}, csrf
    )
    assert verified.status_code == 200, verified.text
    assert verified.json() == {"redirect": "/account"}
    assert is_signed_in(client)
    rt = app.extensions["bascule"]
    uid = db.session.scalar(select(WebAuthnCredential.user_id))
    amrs = [s.amr for s in sessions.list_for_user(rt.store, uid, rt.clock(), rt.session_limits)]
    assert ["pwd", "hwk", "mfa"] in amrs
    db.session.expire_all()
    stored = db.session.scalar(select(WebAuthnCredential))
    assert stored.sign_count == 1 and stored.last_used_at is not None


def test_sign_count_going_backwards_is_refused_and_reported(
    app, client: httpx.Client, key: SoftAuthenticator
) -> None:
    _with_key(app, client, key)
    options, csrf = _second_step_options(client)
    json_post(client, "/login/2fa/webauthn/verify", {"credential": key.get(options)}, csrf)
    sign_out(client)
    options, csrf = _second_step_options(client)
    # A clone of the key, made before that use, still counts 1: signed right, count stale.
    cloned = key.get(options, sign_count=1)
    refused = json_post(client, "/login/2fa/webauthn/verify", {"credential": cloned}, csrf)
    assert refused.status_code == 400
    assert not is_signed_in(client)
    [report] = _events("mfa.webauthn.clone_suspected")
    assert report.details == {"stored_count": 1, "received_count": 1}
    assert report.actor_email == JANE
    db.session.expire_all()
    assert db.session.scalar(select(WebAuthnCredential.sign_count)) == 1  # unchanged


def test_keys_that_never_count_are_accepted(app, client: httpx.Client, base_url: str) -> None:
    """Both counts 0 means the authenticator does not count (many passkeys): no clone check."""
    key = SoftAuthenticator(base_url, "127.0.0.1", counts_signatures=False)
    _with_key(app, client, key)
    for _ in range(2):
        options, csrf = _second_step_options(client)
        ok = json_post(client, "/login/2fa/webauthn/verify", {"credential": key.get(options)}, csrf)
        assert ok.status_code == 200, ok.text
        sign_out(client)


def test_a_challenge_works_once(app, client: httpx.Client, key: SoftAuthenticator) -> None:
    _with_key(app, client, key)
    options, csrf = _second_step_options(client)
    answer = key.get(options)
    assert (
        json_post(client, "/login/2fa/webauthn/verify", {"credential": answer}, csrf).status_code
        == 200
    )
    sign_out(client)

    # A captured answer replayed later: its challenge is gone, even with a fresh one pending.
    options, csrf = _second_step_options(client)
    replay = json_post(client, "/login/2fa/webauthn/verify", {"credential": answer}, csrf)
    assert replay.status_code == 400
    assert not is_signed_in(client)
    # The fresh challenge was spent by that failed try too: an answer to it is refused now.
    late = json_post(client, "/login/2fa/webauthn/verify", {"credential": key.get(options)}, csrf)
    assert late.status_code == 400
    assert "expired" in late.json()["error"]
    assert not is_signed_in(client)


def test_challenges_expire(app, client: httpx.Client, key: SoftAuthenticator, clock) -> None:
    _with_key(app, client, key)
    options, csrf = _second_step_options(client)
    clock.advance(301)
    late = json_post(client, "/login/2fa/webauthn/verify", {"credential": key.get(options)}, csrf)
    assert late.status_code in {400, 401}
    assert not is_signed_in(client)


def test_an_answer_for_another_origin_is_refused(
    app, client: httpx.Client, key: SoftAuthenticator
) -> None:
    _with_key(app, client, key)
    options, csrf = _second_step_options(client)
    # A phishing page relaying our challenge: the browser writes the page's own origin.
    phished = key.get(options, origin="https://bascule-login.evil.test")
    refused = json_post(client, "/login/2fa/webauthn/verify", {"credential": phished}, csrf)
    assert refused.status_code == 400
    assert not is_signed_in(client)
    failure = _events("login.second_factor")[-1]
    assert failure.outcome == "failure" and "origin" in failure.details["cause"].lower()


def test_registration_from_another_origin_is_refused(
    app, client: httpx.Client, key: SoftAuthenticator
) -> None:
    make_user(app)
    sign_in(client, JANE, STRONG_PASSWORD)
    csrf = page_csrf(client.get("/account/2fa").text)
    options = json_post(client, "/account/2fa/webauthn/options", {}, csrf).json()["publicKey"]
    credential = key.create(options, origin="https://evil.test")
    refused = json_post(client, "/account/2fa/webauthn/verify", {"credential": credential}, csrf)
    assert refused.status_code == 400
    assert db.session.scalar(select(WebAuthnCredential)) is None


def test_passkey_sign_in_without_a_password(
    app, client: httpx.Client, key: SoftAuthenticator
) -> None:
    _with_key(app, client, key)
    page = client.get("/login/passkey?next=/account/sessions").text
    csrf = page_csrf(page)
    options = json_post(client, "/login/passkey/options", {}, csrf).json()["publicKey"]
    assert options["userVerification"] == "required"
    assert options.get("allowCredentials", []) == []  # discoverable: the key names the account

    # Without user verification (no PIN or biometric) the key is one factor only: refused.
    weak = key.get(options, user_verified=False)
    body = {"credential": weak, "next": "/account/sessions"}
    assert json_post(client, "/login/passkey/verify", body, csrf).status_code == 400
    assert not is_signed_in(client)

    options = json_post(client, "/login/passkey/options", {}, csrf).json()["publicKey"]
    body = {"credential": key.get(options), "next": "/account/sessions"}
    done = json_post(client, "/login/passkey/verify", body, csrf)
    assert done.status_code == 200, done.text
    assert done.json() == {"redirect": "/account/sessions"}
    assert is_signed_in(client)
    rt = app.extensions["bascule"]
    uid = db.session.scalar(select(WebAuthnCredential.user_id))
    amrs = [s.amr for s in sessions.list_for_user(rt.store, uid, rt.clock(), rt.session_limits)]
    assert ["hwk", "mfa"] in amrs
    assert [e.outcome for e in _events("login.passkey")] == ["failure", "success"]


def test_passkey_of_a_disabled_account_does_not_sign_in(
    app, client: httpx.Client, key: SoftAuthenticator
) -> None:
    from idp.models import User

    _with_key(app, client, key)
    user = db.session.scalar(select(User))
    user.is_active = False
    db.session.commit()
    csrf = page_csrf(client.get("/login/passkey").text)
    options = json_post(client, "/login/passkey/options", {}, csrf).json()["publicKey"]
    refused = json_post(client, "/login/passkey/verify", {"credential": key.get(options)}, csrf)
    assert refused.status_code == 400
    assert not is_signed_in(client)


def test_someone_elses_key_is_not_a_second_factor(
    app, client: httpx.Client, key: SoftAuthenticator, base_url: str
) -> None:
    _with_key(app, client, key)
    make_user(app, email="mallory@acme.test")
    mallory_key = SoftAuthenticator(base_url, "127.0.0.1")
    with httpx.Client(base_url=base_url, headers={"Accept": "text/html"}) as mallory:
        sign_in(mallory, "mallory@acme.test", STRONG_PASSWORD)
        assert register_key(mallory, mallory_key, "Mallory's").status_code == 200
    options, csrf = _second_step_options(client)  # Jane's password, phished
    foreign = mallory_key.get(options, key=mallory_key.keys[0])
    refused = json_post(client, "/login/2fa/webauthn/verify", {"credential": foreign}, csrf)
    assert refused.status_code == 400
    assert not is_signed_in(client)


def test_adding_or_removing_a_key_needs_a_recent_sign_in(
    app, client: httpx.Client, key: SoftAuthenticator, clock
) -> None:
    from tests.support import post_form

    make_user(app)
    sign_in(client, JANE, STRONG_PASSWORD)
    assert register_key(client, key).status_code == 200
    clock.advance(11 * 60)
    page = client.get("/account/2fa").text
    refused = json_post(client, "/account/2fa/webauthn/options", {}, page_csrf(page))
    assert refused.status_code == 401
    assert refused.json()["redirect"] == "/login/reauth?next=/account/2fa"
    key_id = db.session.scalar(select(WebAuthnCredential.id))
    removal = post_form(client, f"/account/2fa/webauthn/{key_id}/remove", {}, page)
    assert removal.headers["location"] == "/login/reauth?next=/account/2fa"
    db.session.expire_all()
    assert db.session.scalar(select(WebAuthnCredential.id)) == key_id
    reasons = [e.details.get("reason") for e in _events("mfa.webauthn.register")]
    assert reasons[-1] == "reauthentication_required"
    assert _events("mfa.webauthn.remove")[-1].outcome == "failure"
