"""Two-factor authentication in a real browser: headless Chromium with a virtual authenticator.

Chromium's DevTools protocol (WebAuthn domain) gives the tab a ctap2 authenticator with
resident keys and user verification, so navigator.credentials works as with a real key. The
IdP runs with a ``localhost`` issuer: WebAuthn needs a secure context, and its RP ID must be a
host name, not an IP address. Each enrolment page is saved under test-output/screenshots/.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from idp.config import Settings
from idp.extensions import db
from idp.models import WebAuthnCredential
from idp.services import sessions, users
from tests.browser.support import chromium, fill_sign_in, new_tab, shot
from tests.mfa_support import oathtool
from tests.support import STRONG_PASSWORD, make_user

pytestmark = pytest.mark.browser

JANE = "jane@acme.test"

# Imported after tests.browser.support, which skips this module when Playwright is missing.
from playwright.sync_api import Page, expect  # noqa: E402


@pytest.fixture
def settings(server, tmp_path: Path, keys_dir: Path, database_url: str) -> Settings:  # type: ignore[no-untyped-def]
    """The usual test settings, but with a ``localhost`` issuer (the WebAuthn RP ID)."""
    return Settings(
        instance_dir=tmp_path / "instance",
        keys_dir=keys_dir,
        bcrypt_rounds=4,
        issuer=server[0].replace("127.0.0.1", "localhost"),
        database_url=database_url,
    )


@pytest.fixture
def base_url(app, settings: Settings) -> str:  # type: ignore[no-untyped-def]
    return settings.issuer


@pytest.fixture
def tab(base_url: str) -> Iterator[tuple[Page, Callable[[str, Any], Any]]]:
    """A tab with a virtual authenticator (a security key that can hold passkeys, with a PIN
    or fingerprint). Yields the page and a DevTools ``send``. Any page error fails the test."""
    with chromium() as (browser, problems):
        page = new_tab(browser, problems, base_url=base_url, width=1024, height=720)
        cdp = page.context.new_cdp_session(page)
        cdp.send("WebAuthn.enable")
        authenticator = cdp.send(
            "WebAuthn.addVirtualAuthenticator",
            {
                "options": {
                    "protocol": "ctap2",
                    "transport": "usb",
                    "hasResidentKey": True,
                    "hasUserVerification": True,
                    "isUserVerified": True,
                    "automaticPresenceSimulation": True,
                }
            },
        )

        def send(method: str, params: Any = None) -> Any:
            body = {"authenticatorId": authenticator["authenticatorId"], **(params or {})}
            return cdp.send(method, body)

        yield page, send


def sign_in_at_login_page(page: Page, email: str, password: str) -> None:
    page.goto("/login")
    fill_sign_in(page, email, password)


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url("/login")


def amrs(app, email: str) -> list[list[str]]:  # type: ignore[no-untyped-def]
    rt = app.extensions["bascule"]
    user = users.find_by_email(email)
    assert user is not None
    return [s.amr for s in sessions.list_for_user(rt.store, user.id, rt.clock(), rt.session_limits)]


def register_security_key(page: Page, name: str) -> None:
    """From the account page to a registered key, through the pages a person would use."""
    page.goto("/account")
    page.get_by_role("link", name="Manage two-factor authentication").click()
    expect(page).to_have_url("/account/2fa")
    expect(page.get_by_role("heading", name="Two-factor authentication")).to_be_visible()
    shot(page, "mfa-overview-off")
    page.get_by_label("Name it, so you can tell your keys apart").fill(name)
    page.get_by_role("button", name="Add security key").click()
    expect(page).to_have_url("/account/2fa/recovery-codes")
    expect(page.get_by_role("heading", name="Save your recovery codes")).to_be_visible()
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    shot(page, "mfa-recovery-codes")
    page.get_by_role("link", name="I have saved them — continue").click()
    expect(page).to_have_url("/account/2fa")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_register_a_security_key_then_sign_in_with_password_and_key(  # type: ignore[no-untyped-def]
    app, tab
) -> None:
    page, send = tab
    make_user(app)
    sign_in_at_login_page(page, JANE, STRONG_PASSWORD)
    expect(page).to_have_url("/account")
    register_security_key(page, "YubiKey on my keyring")
    row = page.locator("table.keys tbody tr")
    expect(row).to_have_count(1)
    expect(row.get_by_role("textbox")).to_have_value("YubiKey on my keyring")
    expect(row).to_contain_text("never")
    expect(page.get_by_text("10", exact=True)).to_be_visible()
    shot(page, "mfa-overview-key")
    [credential] = send("WebAuthn.getCredentials")["credentials"]
    count_after_registration = credential["signCount"]

    sign_out(page)
    sign_in_at_login_page(page, JANE, STRONG_PASSWORD)
    expect(page).to_have_url("/login/2fa")
    expect(page.get_by_role("heading", name="One more step")).to_be_visible()
    expect(page.get_by_label("Recovery code")).to_be_visible()  # keys only: codes as fallback
    shot(page, "mfa-second-step-key")
    page.get_by_role("button", name="Use your security key").click()
    expect(page).to_have_url("/account")
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    expect(page.locator("#two-factor")).to_contain_text("1 security key")
    [credential] = send("WebAuthn.getCredentials")["credentials"]
    assert credential["signCount"] > count_after_registration
    db.session.expire_all()
    stored = db.session.scalar(db.select(WebAuthnCredential))
    assert stored.sign_count == credential["signCount"] and stored.last_used_at is not None
    assert ["pwd", "hwk", "mfa"] in amrs(app, JANE)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sign_in_with_a_passkey_alone(app, tab) -> None:  # type: ignore[no-untyped-def]
    page, send = tab
    make_user(app)
    sign_in_at_login_page(page, JANE, STRONG_PASSWORD)
    register_security_key(page, "Laptop passkey")
    [credential] = send("WebAuthn.getCredentials")["credentials"]
    assert credential["isResidentCredential"]  # a passkey: the key knows the account
    sign_out(page)

    page.get_by_role("link", name="Sign in with a passkey").click()
    expect(page).to_have_url("/login/passkey?next=/account")
    expect(page.get_by_role("heading", name="Sign in with a passkey")).to_be_visible()
    shot(page, "mfa-passkey-sign-in")
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page).to_have_url("/account")
    expect(page.get_by_text(JANE)).to_be_visible()
    assert ["hwk", "mfa"] in amrs(app, JANE)  # no "pwd": no password was typed


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_authenticator_app_page_qr_decodes_and_turns_on(  # type: ignore[no-untyped-def]
    app, tab, clock, tmp_path: Path
) -> None:
    page, _ = tab
    make_user(app)
    sign_in_at_login_page(page, JANE, STRONG_PASSWORD)
    page.goto("/account/2fa")
    page.get_by_role("link", name="Set up an authenticator app").click()
    expect(page).to_have_url("/account/2fa/totp")
    expect(page.get_by_role("heading", name="Set up an authenticator app")).to_be_visible()
    qr = page.get_by_role("img", name="QR code to add jane@acme.test to your authenticator app")
    expect(qr).to_be_visible()
    shot(page, "mfa-totp-enrolment")

    # The QR code as the screen shows it, read back by zbarimg.
    if shutil.which("zbarimg") is None:
        pytest.fail("zbarimg is missing (apt-get install zbar-tools)")
    image = tmp_path / "qr.png"
    qr.screenshot(path=str(image))
    decoded = subprocess.run(
        ["zbarimg", "--raw", "-q", str(image)], capture_output=True, text=True, timeout=30
    )
    assert decoded.returncode == 0, decoded.stderr
    uri = urlsplit(decoded.stdout.strip())
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert unquote(uri.path) == "/Bascule (localhost):jane@acme.test"
    query = parse_qs(uri.query)
    assert query["issuer"] == ["Bascule (localhost)"] and query["secret"] == [secret]
    link = page.get_by_role("link", name="Add it to your authenticator app")
    assert link.get_attribute("href") == decoded.stdout.strip()

    page.get_by_label("6-digit code").fill("123456")
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_role("alert")).to_contain_text("That code is not right")
    shot(page, "mfa-totp-enrolment-error")
    page.get_by_label("6-digit code").fill(oathtool(secret, clock()))
    page.get_by_role("button", name="Turn on").click()
    expect(page).to_have_url("/account/2fa/recovery-codes")
    page.get_by_role("link", name="I have saved them — continue").click()
    expect(page.get_by_text("Set up. Codes from your app are accepted at sign-in.")).to_be_visible()
    shot(page, "mfa-overview-app")

    sign_out(page)
    clock.advance(30)
    sign_in_at_login_page(page, JANE, STRONG_PASSWORD)
    expect(page).to_have_url("/login/2fa")
    page.get_by_label("Code from your authenticator app").fill(oathtool(secret, clock()))
    shot(page, "mfa-second-step-app")
    page.get_by_role("button", name="Verify").click()
    expect(page).to_have_url("/account")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_forced_enrolment_page(app, tab) -> None:  # type: ignore[no-untyped-def]
    page, _ = tab
    make_user(app)
    from idp.services import orgs

    orgs.get("acme").mfa_policy = "everyone"
    db.session.commit()
    sign_in_at_login_page(page, JANE, STRONG_PASSWORD)
    expect(page).to_have_url("/login/2fa/setup")
    expect(page.get_by_role("heading", name="Set up two-factor authentication")).to_be_visible()
    shot(page, "mfa-forced-enrolment")
    page.get_by_role("button", name="Add security key").click()
    expect(page).to_have_url("/account/2fa/recovery-codes")
    page.get_by_role("link", name="I have saved them — continue").click()
    expect(page).to_have_url("/account")
