"""Password sign-in through the real HTTP stack, with the attacks it must withstand."""

from __future__ import annotations

import httpx
import pytest

from idp.extensions import db
from idp.models import AuditEvent
from tests.support import STRONG_PASSWORD, make_user, post_form, session_cookie, sign_in


def test_sign_in_lands_on_account_page(app, browser_client: httpx.Client) -> None:
    make_user(app)
    response = sign_in(browser_client, "jane@acme.test", STRONG_PASSWORD)
    assert response.status_code == 303
    assert response.headers["location"] == "/account"
    page = browser_client.get("/account")
    assert page.status_code == 200
    assert "jane@acme.test" in page.text


def test_email_is_case_insensitive(app, browser_client: httpx.Client) -> None:
    make_user(app)
    assert sign_in(browser_client, "  JANE@Acme.test ", STRONG_PASSWORD).status_code == 303


def test_unknown_email_and_wrong_password_are_indistinguishable(
    app, browser_client: httpx.Client
) -> None:
    make_user(app)
    unknown = sign_in(browser_client, "nobody@acme.test", STRONG_PASSWORD)
    wrong = sign_in(browser_client, "jane@acme.test", "not the password at all")
    assert unknown.status_code == wrong.status_code == 401
    strip = lambda r: r.text.replace("nobody@acme.test", "X").replace("jane@acme.test", "X")  # noqa: E731
    import re

    token = re.compile(r'value="[^"]{40,}"')
    assert token.sub("", strip(unknown)) == token.sub("", strip(wrong))
    assert "The email or password is not right." in unknown.text


def test_session_id_changes_at_sign_in(app, browser_client: httpx.Client) -> None:
    make_user(app)
    browser_client.get("/login")
    before = session_cookie(browser_client)
    assert before
    sign_in(browser_client, "jane@acme.test", STRONG_PASSWORD)
    after = session_cookie(browser_client)
    assert after and after != before
    # The pre-login session id is dead: replaying it does not give the signed-in session.
    replay = httpx.Client(
        base_url=str(browser_client.base_url), cookies={"bascule_session": before}
    )
    assert replay.get("/account").status_code == 302


def test_logged_out_cookie_no_longer_works(app, browser_client: httpx.Client) -> None:
    make_user(app)
    sign_in(browser_client, "jane@acme.test", STRONG_PASSWORD)
    stolen = session_cookie(browser_client)
    page = browser_client.get("/account").text
    assert post_form(browser_client, "/logout", {}, page=page).status_code == 302
    thief = httpx.Client(base_url=str(browser_client.base_url), cookies={"bascule_session": stolen})
    response = thief.get("/account")
    assert response.status_code == 302
    assert response.headers["location"].startswith("/login")


def test_form_without_csrf_token_is_refused(app, browser_client: httpx.Client) -> None:
    make_user(app)
    browser_client.get("/login")
    response = browser_client.post(
        "/login", data={"email": "jane@acme.test", "password": STRONG_PASSWORD}
    )
    assert response.status_code == 400
    assert "did not come from this site" in response.text
    assert session_cookie(browser_client) is not None
    assert browser_client.get("/account").status_code == 302  # not signed in


def test_csrf_token_from_another_session_is_refused(app, base_url: str) -> None:
    make_user(app)
    with httpx.Client(base_url=base_url) as attacker, httpx.Client(base_url=base_url) as victim:
        from tests.support import csrf_token

        token = csrf_token(attacker.get("/login").text)
        victim.get("/login")
        response = victim.post(
            "/login",
            data={"csrf_token": token, "email": "jane@acme.test", "password": STRONG_PASSWORD},
        )
        assert response.status_code == 400


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.test/",
        "//evil.test/",
        "/\\evil.test",
        "\\\\evil.test",
        "http:evil.test",
        "javascript:alert(1)",
        "/%0d%0aLocation:%20https://evil.test",
        "https://evil.test@127.0.0.1/",
    ],
)
def test_open_redirect_through_next_is_refused(
    app, browser_client: httpx.Client, target: str
) -> None:
    make_user(app)
    page = browser_client.get("/login", params={"next": target}).text
    response = browser_client.post(
        "/login",
        data={
            "csrf_token": __import__("tests.support").support.csrf_token(page),
            "email": "jane@acme.test",
            "password": STRONG_PASSWORD,
            "next": target,
        },
    )
    assert response.status_code == 303
    location = response.headers["location"]
    assert location == "/account" or (location.startswith("/") and not location.startswith("//"))
    assert "evil" not in location or location.startswith("/%")


def test_same_origin_next_is_honoured(app, browser_client: httpx.Client) -> None:
    make_user(app)
    response = sign_in(
        browser_client, "jane@acme.test", STRONG_PASSWORD, next_url="/account/sessions"
    )
    assert response.headers["location"] == "/account/sessions"


def test_lockout_after_repeated_failures_and_release_after_backoff(
    app, browser_client: httpx.Client, clock
) -> None:
    make_user(app)
    settings = app.extensions["bascule"].settings
    for _ in range(settings.login_max_failures):
        assert sign_in(browser_client, "jane@acme.test", "wrong password!").status_code == 401
    # Locked now: even the right password is refused, without being checked.
    locked = sign_in(browser_client, "jane@acme.test", STRONG_PASSWORD)
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) == settings.login_lockout_seconds
    assert "Too many failed sign-ins" in locked.text
    # An unknown address locks the same way: the lockout does not reveal who has an account.
    for _ in range(settings.login_max_failures):
        sign_in(browser_client, "ghost@acme.test", "wrong password!")
    assert sign_in(browser_client, "ghost@acme.test", "x").status_code == 429

    clock.advance(settings.login_lockout_seconds + 1)
    assert sign_in(browser_client, "jane@acme.test", STRONG_PASSWORD).status_code == 303
    events = [e.event for e in db.session.scalars(db.select(AuditEvent).order_by(AuditEvent.seq))]
    assert "login.lockout" in events and "login.refused_locked" in events


def test_backoff_doubles_for_a_persistent_attacker(
    app, browser_client: httpx.Client, clock
) -> None:
    make_user(app)
    settings = app.extensions["bascule"].settings
    for _ in range(settings.login_max_failures):
        sign_in(browser_client, "jane@acme.test", "wrong password!")
    clock.advance(settings.login_lockout_seconds + 1)
    assert sign_in(browser_client, "jane@acme.test", "wrong again!!").status_code == 401
    second = sign_in(browser_client, "jane@acme.test", STRONG_PASSWORD)
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) == 2 * settings.login_lockout_seconds


def test_disabled_user_cannot_sign_in_and_loses_sessions(app, browser_client: httpx.Client) -> None:
    from idp.services import users
    from idp.services.audit import ANONYMOUS, CLI

    user = make_user(app)
    sign_in(browser_client, "jane@acme.test", STRONG_PASSWORD)
    assert browser_client.get("/account").status_code == 200
    users.set_active(
        user, False, store=app.extensions["bascule"].store, actor=ANONYMOUS, origin=CLI
    )
    assert browser_client.get("/account").status_code == 302
    assert sign_in(browser_client, "jane@acme.test", STRONG_PASSWORD).status_code == 401


def test_idle_and_absolute_session_limits(app, browser_client: httpx.Client, clock) -> None:
    make_user(app)
    settings = app.extensions["bascule"].settings
    sign_in(browser_client, "jane@acme.test", STRONG_PASSWORD)
    clock.advance(settings.session_idle_minutes * 60 - 5)
    assert browser_client.get("/account").status_code == 200  # activity keeps it alive
    clock.advance(settings.session_idle_minutes * 60 + 1)
    assert browser_client.get("/account").status_code == 302  # idle too long

    sign_in(browser_client, "jane@acme.test", STRONG_PASSWORD)
    for _ in range(settings.session_max_hours * 3600 // (settings.session_idle_minutes * 60 - 60)):
        clock.advance(settings.session_idle_minutes * 60 - 60)
        browser_client.get("/account")
    clock.advance(settings.session_idle_minutes * 60 - 60)
    assert browser_client.get("/account").status_code == 302  # past the absolute lifetime


def test_session_cookie_flags(app, browser_client: httpx.Client) -> None:
    make_user(app)
    response = sign_in(browser_client, "jane@acme.test", STRONG_PASSWORD)
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie


def test_security_headers(app, browser_client: httpx.Client) -> None:
    response = browser_client.get("/login")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert "<script" not in response.text
