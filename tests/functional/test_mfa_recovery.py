"""Recovery codes: shown once, hashed at rest, single use, replaced as a set; re-authentication
before factors are removed or codes regenerated."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from idp.extensions import db
from idp.models import AuditEvent, RecoveryCode, TotpFactor
from tests.mfa_support import enrol_totp, is_signed_in, oathtool, password_step, sign_out
from tests.support import STRONG_PASSWORD, make_user, post_form, sign_in

JANE = "jane@acme.test"


def _enrolled(app, client: httpx.Client, clock) -> tuple[str, list[str]]:  # type: ignore[no-untyped-def]
    make_user(app)
    sign_in(client, JANE, STRONG_PASSWORD)
    secret, codes = enrol_totp(client, clock())
    assert len(codes) == 10 and len(set(codes)) == 10
    sign_out(client)
    return secret, codes


def _last(event: str) -> AuditEvent:
    db.session.expire_all()
    found = db.session.scalars(
        select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.seq.desc())
    ).first()
    assert found is not None, f"no {event} event"
    return found


def test_a_recovery_code_signs_in_once_and_says_how_many_remain(
    app, browser_client: httpx.Client, clock
) -> None:
    _, codes = _enrolled(app, browser_client, clock)
    # Stored as keyed hashes only.
    stored = db.session.scalars(select(RecoveryCode.code_hash)).all()
    assert len(stored) == 10
    assert not any(c.replace("-", "") in h or c in h for c in codes for h in stored)

    assert password_step(browser_client, JANE) == "/login/2fa"
    used = post_form(browser_client, "/login/2fa", {"code": codes[3].upper()})  # case-blind
    assert used.status_code == 302
    assert used.headers["location"] == "/account/2fa?recovery_left=9"
    page = browser_client.get(used.headers["location"]).text
    assert "You have <strong>9</strong> unused recovery codes left." in page
    event = _last("mfa.recovery.use")
    assert event.details == {"remaining": 9}
    sign_out(browser_client)

    password_step(browser_client, JANE)
    again = post_form(browser_client, "/login/2fa", {"code": codes[3]})
    assert again.status_code == 401
    assert not is_signed_in(browser_client)
    assert _last("login.second_factor").outcome == "failure"
    # Another code from the set still works.
    assert post_form(browser_client, "/login/2fa", {"code": codes[4]}).status_code == 302


def test_regenerating_invalidates_the_old_set(app, browser_client: httpx.Client, clock) -> None:
    secret, old = _enrolled(app, browser_client, clock)
    clock.advance(30)
    password_step(browser_client, JANE)
    post_form(browser_client, "/login/2fa", {"code": oathtool(secret, clock())})
    page = browser_client.get("/account/2fa").text
    regenerated = post_form(browser_client, "/account/2fa/recovery-codes", {}, page=page)
    assert regenerated.headers["location"] == "/account/2fa/recovery-codes"
    from tests.mfa_support import recovery_codes

    new = recovery_codes(browser_client.get("/account/2fa/recovery-codes").text)
    assert len(new) == 10 and not set(new) & set(old)
    assert _last("mfa.recovery.regenerate").details == {"unused_codes_invalidated": 10}
    sign_out(browser_client)

    password_step(browser_client, JANE)
    assert post_form(browser_client, "/login/2fa", {"code": old[0]}).status_code == 401
    assert post_form(browser_client, "/login/2fa", {"code": new[0]}).status_code == 302


def test_removal_and_regeneration_need_a_recent_sign_in(
    app, browser_client: httpx.Client, clock
) -> None:
    secret, codes = _enrolled(app, browser_client, clock)
    clock.advance(30)
    password_step(browser_client, JANE)
    post_form(browser_client, "/login/2fa", {"code": oathtool(secret, clock())})

    clock.advance(11 * 60)  # the sign-in is now older than ten minutes
    browser_client.get("/account")  # still signed in (idle limit is 30 minutes)
    page = browser_client.get("/account/2fa").text
    for path in ("/account/2fa/totp/remove", "/account/2fa/recovery-codes"):
        refused = post_form(browser_client, path, {}, page=page)
        assert refused.status_code == 303
        assert refused.headers["location"] == "/login/reauth?next=/account/2fa"
    db.session.expire_all()
    assert db.session.scalar(select(TotpFactor)) is not None
    assert db.session.scalar(select(RecoveryCode).where(RecoveryCode.used_at.is_(None)))
    assert _last("mfa.totp.remove").details["reason"] == "reauthentication_required"
    # The password change needs it too.
    change = post_form(
        browser_client,
        "/account/password",
        {
            "current_password": STRONG_PASSWORD,
            "new_password": "violet kettle drums under moonlight",
            "new_password_confirm": "violet kettle drums under moonlight",
        },
        page=browser_client.get("/account").text,
    )
    assert change.status_code == 303 and change.headers["location"].startswith("/login/reauth")

    # Re-authenticate: password, then the second factor, then back where the user was.
    reauth = browser_client.get("/login/reauth?next=/account/2fa")
    assert reauth.status_code == 200 and "Confirm it is you" in reauth.text
    step = post_form(
        browser_client,
        "/login",
        {"email": JANE, "password": STRONG_PASSWORD, "next": "/account/2fa"},
        page=reauth.text,
    )
    assert step.headers["location"] == "/login/2fa"
    clock.advance(30)
    done = post_form(browser_client, "/login/2fa", {"code": oathtool(secret, clock())})
    assert done.headers["location"] == "/account/2fa"
    removed = post_form(
        browser_client, "/account/2fa/totp/remove", {}, page=browser_client.get("/account/2fa").text
    )
    assert removed.headers["location"] == "/account/2fa?done=totp-removed"
    db.session.expire_all()
    assert db.session.scalar(select(TotpFactor)) is None
    # Without any factor the recovery codes go too, and the password alone signs in again.
    assert db.session.scalar(select(RecoveryCode)) is None
    sign_out(browser_client)
    assert password_step(browser_client, JANE) == "/account"
    assert codes  # (the old codes are gone with the factor)
