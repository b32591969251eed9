"""The account flows through the real HTTP stack: password change, rehash on sign-in, the
sessions page, password reset by mailed link, and invitations."""

from __future__ import annotations

import dataclasses
import email
import email.message
import email.policy
import itertools
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from flask import Flask
from sqlalchemy import Row, select

from idp.extensions import db
from idp.models import AuditEvent, User
from idp.services import credentials, passwords
from tests.support import (
    OTHER_STRONG_PASSWORD,
    STRONG_PASSWORD,
    Browsers,
    invite,
    make_user,
    post_form,
    session_cookie,
    sid_of,
    sign_in,
)

JANE = "jane@acme.test"
BOB = "bob@acme.test"
# Strong enough for the policy and unrelated to Jane's name, email or organisation.
THIRD_PASSWORD = "quiet lantern orbit pickle 77"
LINK = re.compile(r"https?://\S+/(?:password/reset|invite)/[A-Za-z0-9_-]+")
REVOKE_FORM = re.compile(r'action="/account/sessions/([0-9a-f]{64})/revoke"')


# --- helpers ---------------------------------------------------------------------------------


def is_signed_in(browser: httpx.Client) -> bool:
    response = browser.get("/account")
    if response.status_code == 302:
        assert response.headers["location"].startswith("/login")
        return False
    assert response.status_code == 200
    return True


def change_password(
    browser: httpx.Client, current: str, new: str, confirm: str | None = None
) -> httpx.Response:
    return post_form(
        browser,
        "/account/password",
        {
            "current_password": current,
            "new_password": new,
            "new_password_confirm": new if confirm is None else confirm,
        },
        page=browser.get("/account").text,
    )


def stored_hash(address: str) -> str:
    """The hash as the server committed it (ending our own transaction before and after)."""
    db.session.rollback()
    value = db.session.scalar(select(User.password_hash).where(User.email == address))
    db.session.rollback()
    assert value is not None
    return value


def audit_events(event: str) -> list[Row[Any]]:
    """What the server committed for ``event``, oldest first, as plain rows."""
    db.session.rollback()
    query = select(AuditEvent.outcome, AuditEvent.actor_id, AuditEvent.target, AuditEvent.details)
    rows = db.session.execute(query.where(AuditEvent.event == event).order_by(AuditEvent.seq))
    result = list(rows.all())
    db.session.rollback()
    return result


def outbox(app: Flask) -> Path:
    return app.extensions["bascule"].settings.instance_dir / "outbox"


def mails(app: Flask) -> list[email.message.EmailMessage]:
    folder = outbox(app)
    files = sorted(folder.glob("*.eml")) if folder.exists() else []
    return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]


def link_path(message: email.message.EmailMessage) -> str:
    body = message.get_content()
    match = LINK.search(body)
    assert match, f"no link in the mail: {body!r}"
    return urlsplit(match.group(0)).path


def without_tokens(page: str) -> str:
    return re.sub(r'name="csrf_token" value="[^"]+"', "", page)


# --- changing the password -------------------------------------------------------------------


def test_change_password_success_keeps_this_session_and_ends_the_others(
    app, base_url: str, browsers: Browsers
) -> None:
    user = make_user(app)
    make_user(app, email=BOB, name="Bob Roe")
    settings = app.extensions["bascule"].settings
    mine, other_device = browsers.signed_in(), browsers.signed_in()
    bobs = browsers.signed_in(BOB)
    before_cookie = session_cookie(mine)

    response = change_password(mine, STRONG_PASSWORD, OTHER_STRONG_PASSWORD)
    assert response.status_code == 302
    assert response.headers["location"] == "/account?changed=1"

    # This browser stays signed in, under a new session id; its old cookie is dead.
    after_cookie = session_cookie(mine)
    assert after_cookie and after_cookie != before_cookie
    page = mine.get(response.headers["location"])
    assert page.status_code == 200
    assert "Your password was changed" in page.text
    with httpx.Client(base_url=base_url, cookies={"bascule_session": before_cookie}) as replay:
        assert replay.get("/account").status_code == 302
    # The other device of the same user is signed out; another user's session is untouched.
    assert not is_signed_in(other_device)
    assert is_signed_in(bobs)

    # Stored as a standard bcrypt hash at the configured cost.
    stored = stored_hash(JANE)
    assert stored.startswith("$2b$")
    assert passwords.cost_of(stored) == settings.bcrypt_rounds
    assert stored.startswith(f"$2b${settings.bcrypt_rounds:02d}$")
    assert passwords.verify_password(OTHER_STRONG_PASSWORD, stored)
    assert not passwords.verify_password(STRONG_PASSWORD, stored)

    # The old password is gone, the new one works.
    assert browsers.sign_in_status(JANE, STRONG_PASSWORD) == 401
    assert browsers.sign_in_status(JANE, OTHER_STRONG_PASSWORD) == 303

    [event] = audit_events("password.change")
    assert event.outcome == "success"
    assert event.actor_id == user.id
    assert event.details == {"other_sessions_revoked": 1}


def test_wrong_current_password_is_refused_and_counts_toward_lockout(
    app, browsers: Browsers, clock
) -> None:
    make_user(app)
    settings = app.extensions["bascule"].settings
    browser = browsers.signed_in()

    refused = change_password(browser, "not my password at all", OTHER_STRONG_PASSWORD)
    assert refused.status_code == 400
    assert "Your current password is not right." in refused.text
    assert passwords.verify_password(STRONG_PASSWORD, stored_hash(JANE))
    [failure] = audit_events("password.change")
    assert failure.outcome == "failure"
    assert failure.details == {"reason": "bad_current_password"}

    for _ in range(settings.login_max_failures - 1):
        change_password(browser, "still not my password", OTHER_STRONG_PASSWORD)
    # The account is now locked: sign-in elsewhere is refused, even with the right password…
    locked = sign_in(browsers.new(), JANE, STRONG_PASSWORD)
    assert locked.status_code == 429
    # …and so is guessing on through this form with a stolen session: the right current
    # password is not even checked while the lock holds.
    blocked = change_password(browser, STRONG_PASSWORD, OTHER_STRONG_PASSWORD)
    assert blocked.status_code == 429
    assert "Too many wrong passwords. Try again in about 1 minute(s)." in blocked.text
    assert 0 < int(blocked.headers["retry-after"]) <= settings.login_lockout_seconds
    assert audit_events("password.change")[-1].details["reason"] == "locked"
    assert passwords.verify_password(STRONG_PASSWORD, stored_hash(JANE))
    assert is_signed_in(browser)  # the lock refuses guesses, it does not end the session

    clock.advance(settings.login_lockout_seconds + 1)
    assert change_password(browser, STRONG_PASSWORD, OTHER_STRONG_PASSWORD).status_code == 302
    assert passwords.verify_password(OTHER_STRONG_PASSWORD, stored_hash(JANE))


def test_weak_short_and_mismatched_new_passwords_are_refused_with_a_reason(
    app, browsers: Browsers
) -> None:
    make_user(app)
    settings = app.extensions["bascule"].settings
    browser = browsers.signed_in()
    original = stored_hash(JANE)

    common = change_password(browser, STRONG_PASSWORD, "password1234")
    assert common.status_code == 400
    # zxcvbn's own warning and suggestion, shown to the person.
    assert "This is a very common password." in common.text
    assert "Add another word or two. Uncommon words are better." in common.text

    for own_words in ("Jane Doe jane@acme.test", "jane@acme.testJaneDoe"):
        mine = change_password(browser, STRONG_PASSWORD, own_words)
        assert mine.status_code == 400, own_words
        assert "mostly your name, email or organisation" in mine.text

    short = change_password(browser, STRONG_PASSWORD, "tiny pw 42")
    assert short.status_code == 400
    assert f"Use at least {settings.password_min_length} characters (this one has 10)." in (
        short.text
    )

    mismatch = change_password(browser, STRONG_PASSWORD, OTHER_STRONG_PASSWORD, THIRD_PASSWORD)
    assert mismatch.status_code == 400
    assert "The two new passwords are not the same." in mismatch.text

    # None of that changed anything, or signed anyone out.
    assert stored_hash(JANE) == original
    assert is_signed_in(browser)


def test_the_last_five_passwords_cannot_be_reused(app, browsers: Browsers) -> None:
    make_user(app)
    browser = browsers.signed_in()
    history = [STRONG_PASSWORD] + [f"fresh meadow number {n} tangerine" for n in range(1, 5)]
    for previous, new in itertools.pairwise(history):
        assert change_password(browser, previous, new).status_code == 302
    current = history[-1]

    # Five remembered: the current one and the four before it, back to the first.
    for old in history:
        refused = change_password(browser, current, old)
        assert refused.status_code == 400, old
        assert "Choose a password you have not used for your last 5 passwords." in refused.text

    # One more change pushes the first password out of the history: it is allowed again.
    assert change_password(browser, current, THIRD_PASSWORD).status_code == 302
    assert change_password(browser, THIRD_PASSWORD, STRONG_PASSWORD).status_code == 302
    assert browsers.sign_in_status(JANE, STRONG_PASSWORD) == 303


def test_passwords_longer_than_72_bytes_count_in_full(app, browsers: Browsers) -> None:
    make_user(app)
    browser = browsers.signed_in()
    prefix = "granite pelican whistles over the amber harbour at dawn, then sleeps!!"
    prefix += "." * (72 - len(prefix))
    assert len(prefix.encode()) == 72
    first = prefix + " and the first ending is here, 100 chars"
    second = prefix + " and a second ending differs from it ok"
    assert len(first) >= 100 and first[:72] == second[:72] and first != second

    assert change_password(browser, STRONG_PASSWORD, first).status_code == 302
    # bcrypt alone would read only the first 72 bytes: the pre-hash keeps the rest meaningful.
    assert browsers.sign_in_status(JANE, second) == 401
    assert browsers.sign_in_status(JANE, prefix) == 401
    assert browsers.sign_in_status(JANE, first) == 303


def test_rehash_on_sign_in_when_the_configured_cost_changes(
    app, settings, server, extra_app, browsers: Browsers
) -> None:
    make_user(app)
    assert passwords.cost_of(stored_hash(JANE)) == 4
    # The operator raises the cost and restarts: the same database, store and URL.
    server[1].app = extra_app(dataclasses.replace(settings, bcrypt_rounds=5))

    assert browsers.sign_in_status(JANE, "a wrong password, no rehash") == 401
    assert passwords.cost_of(stored_hash(JANE)) == 4

    assert browsers.sign_in_status(JANE, STRONG_PASSWORD) == 303
    rehashed = stored_hash(JANE)
    assert rehashed.startswith("$2b$05$")
    assert passwords.verify_password(STRONG_PASSWORD, rehashed)
    assert browsers.sign_in_status(JANE, STRONG_PASSWORD) == 303
    assert stored_hash(JANE) == rehashed  # already at the cost: not hashed again


# --- the sessions page -----------------------------------------------------------------------


def test_sessions_page_lists_and_revokes_own_sessions_only(app, browsers: Browsers) -> None:
    make_user(app)
    make_user(app, email=BOB, name="Bob Roe")
    laptop, phone = browsers.signed_in(), browsers.signed_in()
    bobs = browsers.signed_in(BOB)
    phone_sid = sid_of(phone)

    page = laptop.get("/account/sessions")
    assert page.status_code == 200
    assert set(REVOKE_FORM.findall(page.text)) == {sid_of(laptop), phone_sid}
    assert page.text.count("this browser") == 1

    # Someone else's session id is refused as if it did not exist, and that session lives on.
    foreign = post_form(laptop, f"/account/sessions/{sid_of(bobs)}/revoke", {}, page=page.text)
    assert foreign.status_code == 404
    assert "That session has already ended." in foreign.text
    assert is_signed_in(bobs)
    assert audit_events("session.revoke") == []

    revoked = post_form(laptop, f"/account/sessions/{phone_sid}/revoke", {}, page=page.text)
    assert revoked.status_code == 302
    assert revoked.headers["location"] == "/account/sessions"
    phone_next = phone.get("/account")
    assert phone_next.status_code == 302
    assert phone_next.headers["location"].startswith("/login")
    assert is_signed_in(laptop)
    assert set(REVOKE_FORM.findall(laptop.get("/account/sessions").text)) == {sid_of(laptop)}
    [event] = audit_events("session.revoke")
    assert event.target == phone_sid

    # Revoking it again: already gone.
    again = post_form(laptop, f"/account/sessions/{phone_sid}/revoke", {}, page=page.text)
    assert again.status_code == 404

    # Signing out this browser from the list ends this session.
    own = post_form(laptop, f"/account/sessions/{sid_of(laptop)}/revoke", {}, page=page.text)
    assert own.status_code == 302
    assert own.headers["location"] == "/login"
    assert not is_signed_in(laptop)


def test_revoke_other_sessions(app, browsers: Browsers) -> None:
    make_user(app)
    make_user(app, email=BOB, name="Bob Roe")
    here, phone, tablet = (browsers.signed_in() for _ in range(3))
    bobs = browsers.signed_in(BOB)

    page = here.get("/account/sessions")
    assert len(REVOKE_FORM.findall(page.text)) == 3
    assert "Sign out all other sessions" in page.text
    response = post_form(here, "/account/sessions/revoke-others", {}, page=page.text)
    assert response.status_code == 302
    assert response.headers["location"] == "/account/sessions"

    assert not is_signed_in(phone)
    assert not is_signed_in(tablet)
    assert is_signed_in(here)
    assert is_signed_in(bobs)
    listing = here.get("/account/sessions").text
    assert REVOKE_FORM.findall(listing) == [sid_of(here)]
    assert "Sign out all other sessions" not in listing
    [event] = audit_events("session.revoke_others")
    assert event.details == {"count": 2}


# --- password reset by mailed link -----------------------------------------------------------


def request_reset(browsers: Browsers, address: str) -> httpx.Response:
    with browsers.new() as anonymous:
        return post_form(anonymous, "/password/forgot", {"email": address})


def test_forgot_password_does_not_reveal_who_has_an_account(app, browsers: Browsers) -> None:
    make_user(app)
    known = request_reset(browsers, JANE)
    unknown = request_reset(browsers, "nobody@acme.test")
    malformed = request_reset(browsers, "not an address")
    assert known.status_code == unknown.status_code == malformed.status_code == 200
    assert without_tokens(known.text) == without_tokens(unknown.text)
    assert without_tokens(known.text) == without_tokens(malformed.text)
    assert "If an account exists for that address" in known.text

    [message] = mails(app)  # one mail, to the account that exists
    assert message["To"] == JANE
    assert message["Subject"] == "Reset your Bascule password"
    assert link_path(message).startswith("/password/reset/")


def test_reset_link_sets_a_new_password_once_and_signs_out_everywhere(
    app, browsers: Browsers
) -> None:
    user = make_user(app)
    elsewhere = browsers.signed_in()
    assert request_reset(browsers, JANE).status_code == 200
    [message] = mails(app)
    path = link_path(message)

    with browsers.new() as browser:
        form = browser.get(path)
        assert form.status_code == 200
        assert "Choose a new password" in form.text and JANE in form.text

        weak = post_form(
            browser, path, {"password": "password1234", "password_confirm": "password1234"}
        )
        assert weak.status_code == 400
        assert "This is a very common password." in weak.text
        mismatch = post_form(
            browser,
            path,
            {"password": OTHER_STRONG_PASSWORD, "password_confirm": THIRD_PASSWORD},
        )
        assert mismatch.status_code == 400
        assert "The two passwords are not the same." in mismatch.text
        # A refused password does not use the link up.
        assert browser.get(path).status_code == 200
        assert is_signed_in(elsewhere)

        done = post_form(
            browser,
            path,
            {"password": OTHER_STRONG_PASSWORD, "password_confirm": OTHER_STRONG_PASSWORD},
        )
        assert done.status_code == 200
        assert "Your password is set" in done.text

        # Single use: the form and the submit both answer 410 now.
        used = browser.get(path)
        assert used.status_code == 410
        assert "This link no longer works" in used.text
        replay = post_form(
            browser,
            path,
            {"password": THIRD_PASSWORD, "password_confirm": THIRD_PASSWORD},
            page=form.text,
        )
        assert replay.status_code == 410

    assert not is_signed_in(elsewhere)
    assert browsers.sign_in_status(JANE, STRONG_PASSWORD) == 401
    assert browsers.sign_in_status(JANE, OTHER_STRONG_PASSWORD) == 303
    assert passwords.verify_password(OTHER_STRONG_PASSWORD, stored_hash(JANE))
    [event] = audit_events("password.reset")
    assert event.actor_id == user.id
    assert event.details == {"sessions_revoked": 1}


def test_reset_link_expires_after_30_minutes_of_the_injected_clock(
    app, browsers: Browsers, clock
) -> None:
    make_user(app)
    request_reset(browsers, JANE)
    [message] = mails(app)
    path = link_path(message)

    with browsers.new() as browser:
        form = browser.get(path)
        assert form.status_code == 200
        clock.advance(credentials.RESET_TTL_SECONDS - 10)
        assert browser.get(path).status_code == 200
        clock.advance(11)  # 30 minutes and a second after the mail
        expired = browser.get(path)
        assert expired.status_code == 410
        assert "expired" in expired.text
        late = post_form(
            browser,
            path,
            {"password": OTHER_STRONG_PASSWORD, "password_confirm": OTHER_STRONG_PASSWORD},
            page=form.text,
        )
        assert late.status_code == 410
    assert browsers.sign_in_status(JANE, STRONG_PASSWORD) == 303
    assert browsers.sign_in_status(JANE, OTHER_STRONG_PASSWORD) == 401


# --- invitations -----------------------------------------------------------------------------


def test_invitation_sets_a_first_password_then_the_user_signs_in(
    app, base_url: str, browsers: Browsers
) -> None:
    link = invite(app, "ivy@acme.test")
    path = urlsplit(link).path
    assert link.startswith(base_url + "/invite/")
    [message] = mails(app)  # the same link is mailed
    assert message["To"] == "ivy@acme.test"
    assert link_path(message) == path
    # No password yet: nothing to sign in with.
    assert browsers.sign_in_status("ivy@acme.test", STRONG_PASSWORD) == 401
    # An invitation is not a reset link.
    assert browsers.new().get(path.replace("/invite/", "/password/reset/")).status_code == 410

    with browsers.new() as browser:
        form = browser.get(path)
        assert form.status_code == 200
        assert "Welcome: choose your password" in form.text and "ivy@acme.test" in form.text
        short = post_form(browser, path, {"password": "short 1", "password_confirm": "short 1"})
        assert short.status_code == 400
        assert "Use at least 12 characters (this one has 7)." in short.text
        own = post_form(
            browser,
            path,
            {
                "password": "Ivy Newcomer ivy@acme.test",
                "password_confirm": "Ivy Newcomer ivy@acme.test",
            },
        )
        assert own.status_code == 400
        assert "mostly your name, email or organisation" in own.text
        done = post_form(
            browser, path, {"password": THIRD_PASSWORD, "password_confirm": THIRD_PASSWORD}
        )
        assert done.status_code == 200
        assert "Your password is set" in done.text
        assert browser.get(path).status_code == 410  # single use

    assert browsers.sign_in_status("ivy@acme.test", THIRD_PASSWORD) == 303
    stored = stored_hash("ivy@acme.test")
    assert passwords.cost_of(stored) == app.extensions["bascule"].settings.bcrypt_rounds
    assert [e.target for e in audit_events("member.invite")] == ["ivy@acme.test"]
    assert len(audit_events("invitation.accept")) == 1


def test_invitation_expires_after_seven_days(app, browsers: Browsers, clock) -> None:
    path = urlsplit(invite(app, "ivy@acme.test")).path
    clock.advance(credentials.INVITE_TTL_SECONDS - 60)
    assert browsers.new().get(path).status_code == 200
    clock.advance(61)
    assert browsers.new().get(path).status_code == 410
