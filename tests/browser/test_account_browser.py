"""A person at a real browser: sign in, the account and sessions pages, a password change.

Headless Chromium (Debian's, driven by Playwright) talks to the IdP over real HTTP. Every page
is saved as a full-page screenshot under ``test-output/screenshots/`` for a person to look at.
The pages must work under the Content Security Policy: any refused script or style fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from tests.browser.support import chromium, fill_sign_in, new_tab, shot
from tests.support import OTHER_STRONG_PASSWORD, STRONG_PASSWORD, make_user

pytestmark = pytest.mark.browser

# Imported after tests.browser.support, which skips this module when Playwright is missing.
from playwright.sync_api import Page, expect  # noqa: E402

FIREFOX_ON_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
)


@pytest.fixture
def devices(base_url: str) -> Iterator[Callable[..., Page]]:
    """Opens a tab on a device of its own (own cookies). Any page error fails the test: a
    script error, a CSP refusal, a missing stylesheet."""
    with chromium() as (browser, problems):

        def open_tab(user_agent: str | None = None) -> Page:
            return new_tab(
                browser, problems, base_url=base_url, width=1024, height=720, user_agent=user_agent
            )

        yield open_tab


@pytest.fixture
def page(devices: Callable[..., Page]) -> Page:
    return devices()


def fill_password_change(page: Page, current: str, new: str, again: str) -> None:
    page.get_by_label("Current password").fill(current)
    page.get_by_label("New password", exact=True).fill(new)
    page.get_by_label("New password again").fill(again)
    page.get_by_role("button", name="Change password").click()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sign_in_account_sessions_and_password_change(  # type: ignore[no-untyped-def]
    app, devices: Callable[..., Page], page: Page
) -> None:
    make_user(app)

    # Not signed in: the account page sends the person to sign in, and back afterwards.
    page.goto("/account")
    expect(page).to_have_url("/login?next=/account")
    expect(page).to_have_title("Sign in · Bascule")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("link", name="Forgot your password?")).to_be_visible()
    shot(page, "login")

    fill_sign_in(page, "jane@acme.test", "not my password at all")
    expect(page.get_by_role("alert")).to_have_text("The email or password is not right.")
    expect(page.get_by_label("Email")).to_have_value("jane@acme.test")  # kept, not retyped
    shot(page, "login-error")

    fill_sign_in(page, "jane@acme.test", STRONG_PASSWORD)
    expect(page).to_have_url("/account")
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    expect(page.get_by_text("jane@acme.test")).to_be_visible()
    expect(page.get_by_role("listitem")).to_contain_text("Acme")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    shot(page, "account")

    # A weak new password is refused, with the reason and advice on the page.
    fill_password_change(page, STRONG_PASSWORD, "password1234", "password1234")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("This is a very common password.")
    expect(alert).to_contain_text("Add another word or two.")
    shot(page, "account-password-error")
    # Two different new passwords are refused too, and the current one is checked.
    fill_password_change(page, STRONG_PASSWORD, OTHER_STRONG_PASSWORD, OTHER_STRONG_PASSWORD + "!")
    expect(page.get_by_role("alert")).to_have_text("The two new passwords are not the same.")
    fill_password_change(
        page, "wrong current password", OTHER_STRONG_PASSWORD, OTHER_STRONG_PASSWORD
    )
    expect(page.get_by_role("alert")).to_have_text("Your current password is not right.")

    # Jane is also signed in on another computer.
    laptop = devices(user_agent=FIREFOX_ON_WINDOWS)
    laptop.goto("/login")
    fill_sign_in(laptop, "jane@acme.test", STRONG_PASSWORD)
    expect(laptop).to_have_url("/account")

    page.get_by_role("link", name="Sessions", exact=True).click()
    expect(page).to_have_url("/account/sessions")
    expect(page.get_by_role("heading", name="Your sessions")).to_be_visible()
    rows = page.locator("table.sessions tbody tr")
    expect(rows).to_have_count(2)
    here = rows.filter(has_text="this browser")
    expect(here).to_have_count(1)
    device = here.locator("td").first
    expect(device).to_contain_text("Chrome on Linux")  # not the raw User-Agent header
    expect(device.locator("span[title]")).to_have_attribute("title", re.compile("HeadlessChrome"))
    expect(here).to_contain_text("127.0.0.1")
    expect(here.get_by_role("button")).to_have_text("Sign out")
    other = rows.filter(has_text="Firefox on Windows")
    expect(other.get_by_role("button")).to_have_text("Revoke")
    expect(page.get_by_role("button", name="Sign out all other sessions")).to_be_visible()
    shot(page, "sessions")

    other.get_by_role("button", name="Revoke").click()
    expect(page).to_have_url("/account/sessions")
    expect(rows).to_have_count(1)
    expect(page.get_by_role("button", name="Sign out all other sessions")).to_have_count(0)
    laptop.reload()
    expect(laptop).to_have_url("/login?next=/account")

    page.get_by_role("link", name="Account", exact=True).click()
    fill_password_change(page, STRONG_PASSWORD, OTHER_STRONG_PASSWORD, OTHER_STRONG_PASSWORD)
    expect(page).to_have_url("/account?changed=1")
    expect(page.get_by_role("status")).to_contain_text("Your password was changed.")
    shot(page, "account-password-changed")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url("/login")
    page.goto("/account")
    expect(page).to_have_url("/login?next=/account")

    fill_sign_in(page, "jane@acme.test", STRONG_PASSWORD)  # the old password is gone
    expect(page.get_by_role("alert")).to_have_text("The email or password is not right.")
    fill_sign_in(page, "jane@acme.test", OTHER_STRONG_PASSWORD)
    expect(page).to_have_url("/account")
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
