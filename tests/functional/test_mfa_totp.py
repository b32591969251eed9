"""Authenticator apps (TOTP) through the real HTTP stack, checked against Debian's oathtool.

Time is the injected FrozenClock: windows and replays are tested by moving it, never by
sleeping.
"""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

import httpx
from sqlalchemy import select, text

from idp.extensions import db
from idp.models import AuditEvent, TotpFactor
from idp.services import sessions, totp
from tests.mfa_support import (
    enrol_totp,
    is_signed_in,
    oathtool,
    otpauth_uri,
    password_step,
    sign_out,
    totp_page_secret,
)
from tests.support import make_user, post_form, sign_in

JANE = "jane@acme.test"


def _events(name: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.seq)
        )
    )


def _amr(app, uid: str) -> list[list[str]]:  # type: ignore[no-untyped-def]
    rt = app.extensions["bascule"]
    return [s.amr for s in sessions.list_for_user(rt.store, uid, rt.clock(), rt.session_limits)]


def enrolled_and_signed_out(app, client: httpx.Client, clock) -> str:  # type: ignore[no-untyped-def]
    """Jane with an authenticator app, signed out again: the start of most tests here."""
    make_user(app)
    sign_in(client, JANE, "correct horse battery staple 42")
    secret, _ = enrol_totp(client, clock())
    sign_out(client)
    return secret


def test_enrol_with_oathtool_then_sign_in_with_password_and_code(
    app, browser_client: httpx.Client, clock
) -> None:
    user = make_user(app)
    sign_in(browser_client, JANE, "correct horse battery staple 42")
    page = browser_client.get("/account/2fa/totp")
    assert page.status_code == 200
    assert 'src="data:image/svg+xml;base64,' in page.text  # the QR code, allowed by the CSP
    secret = totp_page_secret(page.text)
    assert len(secret) == 32  # 160 bits

    uri = urlsplit(otpauth_uri(page.text))
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    query = parse_qs(uri.query)
    assert query["secret"] == [secret]
    assert query["issuer"] == ["Bascule (127.0.0.1)"]
    assert unquote(uri.path) == "/Bascule (127.0.0.1):jane@acme.test"

    # A wrong code does not turn it on.
    wrong = post_form(browser_client, "/account/2fa/totp", {"code": "000000"}, page=page.text)
    assert wrong.status_code == 400
    assert "That code is not right" in wrong.text
    assert db.session.scalar(select(TotpFactor)) is None
    # The same seed is still offered after the failure (the app already holds it).
    assert totp_page_secret(wrong.text) == secret

    done = post_form(
        browser_client, "/account/2fa/totp", {"code": oathtool(secret, clock())}, page=page.text
    )
    assert done.status_code == 302
    shown = browser_client.get("/account/2fa/recovery-codes")
    assert shown.text.count("<li><code>") == 10
    assert browser_client.get("/account/2fa/recovery-codes").status_code == 302  # shown once
    assert [e.outcome for e in _events("mfa.totp.enrol")] == ["failure", "success"]

    sign_out(browser_client)
    clock.advance(30)
    assert password_step(browser_client, JANE) == "/login/2fa"
    assert not is_signed_in(browser_client)  # the password alone does not sign in
    code = oathtool(secret, clock())
    response = post_form(browser_client, "/login/2fa", {"code": code})
    assert response.status_code == 303
    assert response.headers["location"] == "/account"
    assert is_signed_in(browser_client)
    assert ["pwd", "otp", "mfa"] in _amr(app, user.id)


def test_the_same_code_twice_is_refused(app, browser_client: httpx.Client, clock) -> None:
    secret = enrolled_and_signed_out(app, browser_client, clock)
    clock.advance(30)
    code = oathtool(secret, clock())

    password_step(browser_client, JANE)
    assert post_form(browser_client, "/login/2fa", {"code": code}).status_code == 303
    sign_out(browser_client)

    # Someone who watched the code being typed tries it within the same 30 seconds.
    password_step(browser_client, JANE)
    replay = post_form(browser_client, "/login/2fa", {"code": code})
    assert replay.status_code == 401
    assert "That code is not right" in replay.text
    assert not is_signed_in(browser_client)
    failure = _events("login.second_factor")[-1]
    assert (failure.outcome, failure.details["reason"]) == ("failure", "replay")

    # The next step's code works.
    clock.advance(30)
    assert (
        post_form(browser_client, "/login/2fa", {"code": oathtool(secret, clock())}).status_code
        == 303
    )


def test_the_code_typed_at_enrolment_cannot_sign_in(
    app, browser_client: httpx.Client, clock
) -> None:
    secret = enrolled_and_signed_out(app, browser_client, clock)
    password_step(browser_client, JANE)
    assert (
        post_form(browser_client, "/login/2fa", {"code": oathtool(secret, clock())}).status_code
        == 401
    )


def test_window_is_one_step_either_side(app, browser_client: httpx.Client, clock) -> None:
    secret = enrolled_and_signed_out(app, browser_client, clock)
    clock.advance(300)
    now = clock()

    password_step(browser_client, JANE)
    two_steps_old = oathtool(secret, now - 60)
    assert post_form(browser_client, "/login/2fa", {"code": two_steps_old}).status_code == 401
    two_steps_ahead = oathtool(secret, now + 60)
    assert post_form(browser_client, "/login/2fa", {"code": two_steps_ahead}).status_code == 401
    one_step_old = oathtool(secret, now - 30)
    assert post_form(browser_client, "/login/2fa", {"code": one_step_old}).status_code == 303
    assert is_signed_in(browser_client)


def test_a_used_step_also_refuses_older_steps(app, browser_client: httpx.Client, clock) -> None:
    """After the step t code, the still-in-window t-1 code is refused too."""
    secret = enrolled_and_signed_out(app, browser_client, clock)
    clock.advance(120)
    password_step(browser_client, JANE)
    assert (
        post_form(browser_client, "/login/2fa", {"code": oathtool(secret, clock())}).status_code
        == 303
    )
    sign_out(browser_client)
    password_step(browser_client, JANE)
    older = oathtool(secret, clock() - 30)
    assert post_form(browser_client, "/login/2fa", {"code": older}).status_code == 401


def test_secret_is_sealed_in_the_database(app, browser_client: httpx.Client, clock) -> None:
    user = make_user(app)
    sign_in(browser_client, JANE, "correct horse battery staple 42")
    secret, _ = enrol_totp(browser_client, clock())
    db.session.expire_all()
    stored = db.session.scalar(select(TotpFactor.secret_sealed))
    assert stored is not None and secret not in stored and secret.lower() not in stored
    # Every text value of the row, as the database returns it: no clear seed anywhere.
    row = db.session.execute(text("SELECT * FROM totp_factors")).one()
    assert not any(secret in str(value) for value in row)
    # And it is the real seed, sealed: the ring opens it (so this test would see a plain copy).
    keyring = app.extensions["bascule"].keyring
    factor = db.session.scalar(select(TotpFactor))
    assert totp.secret_of(keyring, user, factor) == secret


def test_wrong_codes_lock_the_second_step_and_end_the_pending_sign_in(
    app, browser_client: httpx.Client, clock
) -> None:
    secret = enrolled_and_signed_out(app, browser_client, clock)
    clock.advance(30)

    password_step(browser_client, JANE)
    for _ in range(4):
        assert post_form(browser_client, "/login/2fa", {"code": "123456"}).status_code == 401
    # The fifth wrong code ends this pending sign-in: back to the password.
    fifth = post_form(browser_client, "/login/2fa", {"code": "123456"})
    assert "Too many wrong codes" in fifth.text
    assert browser_client.get("/login/2fa").headers["location"] == "/login"

    # The account is now locked for codes, even the right one, until the lock ends.
    password_step(browser_client, JANE)
    locked = post_form(browser_client, "/login/2fa", {"code": oathtool(secret, clock())})
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) > 0
    assert [e.outcome for e in _events("mfa.lockout")] == ["failure"]
    clock.advance(120)
    password_step(browser_client, JANE)
    assert (
        post_form(browser_client, "/login/2fa", {"code": oathtool(secret, clock())}).status_code
        == 303
    )


def test_pending_sign_in_expires(app, browser_client: httpx.Client, clock) -> None:
    secret = enrolled_and_signed_out(app, browser_client, clock)
    password_step(browser_client, JANE)
    page = browser_client.get("/login/2fa").text
    clock.advance(6 * 60)
    late = post_form(browser_client, "/login/2fa", {"code": oathtool(secret, clock())}, page=page)
    assert late.status_code == 302 and late.headers["location"] == "/login"
    assert not is_signed_in(browser_client)


def test_session_id_changes_when_the_second_factor_passes(
    app, browser_client: httpx.Client, clock
) -> None:
    secret = enrolled_and_signed_out(app, browser_client, clock)
    clock.advance(30)
    password_step(browser_client, JANE)
    halfway = browser_client.cookies.get("bascule_session")
    post_form(browser_client, "/login/2fa", {"code": oathtool(secret, clock())})
    assert browser_client.cookies.get("bascule_session") not in (None, halfway)
    with httpx.Client(
        base_url=str(browser_client.base_url), cookies={"bascule_session": halfway or ""}
    ) as thief:
        assert thief.get("/account").status_code == 302


def test_the_organisations_session_limits_hold_after_the_second_step(
    app, browser_client: httpx.Client, clock
) -> None:
    from idp.services import orgs

    secret = enrolled_and_signed_out(app, browser_client, clock)
    orgs.get("acme").session_idle_minutes = 5
    db.session.commit()
    clock.advance(30)
    password_step(browser_client, JANE)
    post_form(browser_client, "/login/2fa", {"code": oathtool(secret, clock())})
    assert is_signed_in(browser_client)
    clock.advance(5 * 60 + 1)
    assert not is_signed_in(browser_client)
