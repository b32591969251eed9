"""An owner runs the admin console in a real browser, and a member sees the effect at once.

The owner invites Jane (the link is read from the page, as an admin would copy it), Jane
chooses a password through it and signs in on her own device, the owner creates a custom role
"sender" with messages.send only and gives it to her, and Jane's next page shows exactly that
permission. Every admin page is saved as a full-page screenshot under
``test-output/screenshots/admin-*.png`` for a person to look at. Any script error, CSP refusal
or missing resource fails the test.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.browser.support import chromium, new_tab, shot
from tests.support import OTHER_STRONG_PASSWORD, STRONG_PASSWORD, make_user

pytestmark = pytest.mark.browser

# Imported after tests.browser.support, which skips this module when Playwright is missing.
from playwright.sync_api import Page, expect  # noqa: E402


@pytest.fixture
def devices(base_url: str) -> Iterator[Callable[[], Page]]:
    """Opens a tab on a device of its own (own cookies). Any page error fails the test."""
    with chromium() as (browser, problems):
        yield lambda: new_tab(browser, problems, base_url=base_url, width=1280, height=800)


def sign_in(page: Page, email: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url("/account")


def permissions_shown(page: Page) -> list[str]:
    return page.locator("#permissions dt").all_inner_texts()


def member_row(page: Page, email: str):  # type: ignore[no-untyped-def]
    return page.locator("table.members tbody tr").filter(has_text=email)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_owner_invites_creates_a_role_assigns_it_and_the_member_sees_it(  # type: ignore[no-untyped-def]
    app, devices: Callable[[], Page]
) -> None:
    make_user(app, "olivia@acme.test", role="owner", name="Olivia Owner")
    owner = devices()
    sign_in(owner, "olivia@acme.test", STRONG_PASSWORD)

    # The header offers "Admin" to an owner; the overview sums up the organisation.
    owner.get_by_role("link", name="Admin", exact=True).click()
    expect(owner).to_have_url("/admin")
    expect(owner.get_by_role("heading", name="Overview")).to_be_visible()
    expect(owner.locator(".stat").first).to_contain_text("1 active")
    shot(owner, "admin-overview")

    # Invite Jane; the link is shown once on the page (and mailed).
    owner.get_by_role("link", name="Members", exact=True).click()
    expect(owner).to_have_url("/admin/members")
    owner.get_by_label("Email").fill("jane@acme.test")
    owner.get_by_label("Name").fill("Jane Doe")
    owner.get_by_label("Role", exact=True).select_option("member")
    owner.get_by_role("button", name="Invite").click()
    expect(owner).to_have_url("/admin/members")
    expect(owner.get_by_role("status").first).to_contain_text("jane@acme.test was invited")
    link = owner.get_by_label("Invitation link").input_value()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/invite/[\w-]+", link), link
    expect(member_row(owner, "jane@acme.test")).to_contain_text("invited")
    shot(owner, "admin-members-invited")

    # Jane, on her own device, chooses a password through the link and signs in.
    jane = devices()
    jane.goto(urlsplit(link).path)
    expect(jane.get_by_role("heading", name="Welcome: choose your password")).to_be_visible()
    jane.get_by_label("New password", exact=True).fill(OTHER_STRONG_PASSWORD)
    jane.get_by_label("New password again").fill(OTHER_STRONG_PASSWORD)
    jane.get_by_role("button", name="Set the password").click()
    expect(jane.get_by_role("heading", name="Your password is set")).to_be_visible()
    sign_in(jane, "jane@acme.test", OTHER_STRONG_PASSWORD)
    expect(jane.get_by_role("heading", name="Your permissions in Acme")).to_be_visible()
    assert permissions_shown(jane) == ["messages.edit", "messages.send"]
    expect(jane.get_by_role("link", name="Admin", exact=True)).to_have_count(0)
    response = jane.goto("/admin")
    assert response is not None and response.status == 403
    expect(jane.get_by_role("heading", name="403")).to_be_visible()
    shot(jane, "admin-forbidden-for-a-member")

    # The owner creates "sender" with messages.send only; the checklist explains each one.
    owner.get_by_role("link", name="Roles", exact=True).click()
    expect(owner).to_have_url("/admin/roles")
    owner.get_by_label("Name").fill("sender")
    send = owner.get_by_role("checkbox", name="messages.send Send messages", exact=True)
    send.check()
    owner.get_by_role("button", name="Create role").click()
    expect(owner.get_by_role("status")).to_contain_text("The role sender was created.")
    sender_row = owner.locator("table.roles tbody tr").filter(has_text="sender")
    expect(sender_row.locator("code")).to_have_text(["messages.send"])
    shot(owner, "admin-roles")

    owner_row = owner.locator("table.roles tbody tr").filter(has_text="owner")
    owner_row.get_by_role("link", name="Details").click()
    expect(owner.get_by_role("heading", name="Role owner built-in")).to_be_visible()
    expect(owner.get_by_text("Built-in roles cannot be changed.")).to_be_visible()
    shot(owner, "admin-role-builtin")
    owner.get_by_role("link", name="← All roles").click()
    sender_row.get_by_role("link", name="Edit").click()
    expect(owner.get_by_role("heading", name="Role sender")).to_be_visible()
    expect(owner.get_by_role("checkbox", name="messages.send")).to_be_checked()
    expect(owner.get_by_role("checkbox", name="messages.edit")).not_to_be_checked()
    shot(owner, "admin-role-edit")

    # ... and gives it to Jane.
    owner.get_by_role("link", name="Members", exact=True).click()
    row = member_row(owner, "jane@acme.test")
    row.get_by_label("Role of jane@acme.test").select_option("sender")
    row.get_by_role("button", name="Change role").click()
    expect(owner.get_by_role("status")).to_contain_text("jane@acme.test now has the role sender")
    expect(member_row(owner, "jane@acme.test").get_by_role("combobox")).to_have_value("sender")
    shot(owner, "admin-members")

    # Jane's very next request shows exactly the new permission.
    jane.goto("/account")
    expect(jane.locator("#permissions dt")).to_have_text(["messages.send"])
    expect(jane.get_by_text("Your role is sender.")).to_be_visible()
    shot(jane, "admin-member-account-after-role-change")

    # The remaining admin pages, each looked at: removal asks first, settings refuse
    # out-of-bounds values with the field's name, the audit log filters.
    member_row(owner, "jane@acme.test").get_by_role("link", name="Remove…").click()
    expect(owner.get_by_role("heading", name="Remove jane@acme.test?")).to_be_visible()
    shot(owner, "admin-remove-confirm")
    owner.get_by_role("link", name="Keep them").click()
    expect(owner).to_have_url("/admin/members")

    owner.get_by_role("link", name="Security settings").click()
    expect(owner.get_by_role("heading", name="Security settings")).to_be_visible()
    shot(owner, "admin-settings")
    idle = owner.get_by_label("Sign out after inactivity (minutes)")
    idle.fill("1")
    # The browser itself would stop this (min/max): the server's answer is what we test.
    owner.locator("form.wide-form", has=idle).evaluate("form => form.noValidate = true")
    owner.get_by_role("button", name="Save settings").click()
    expect(owner.get_by_role("alert")).to_have_text(
        "“Sign out after inactivity (minutes)” must be between 5 and 30."
    )
    shot(owner, "admin-settings-refused")
    idle.fill("15")
    owner.get_by_label("Allowed redirect origins").fill("https://chat.acme.test")
    owner.get_by_role("button", name="Save settings").click()
    expect(owner.get_by_role("status")).to_have_text("The security settings were saved.")
    expect(idle).to_have_value("15")

    # The two-factor policy has a form of its own; each choice is explained in plain words.
    expect(owner.get_by_role("radio", name="Nobody")).to_be_checked()
    owner.get_by_role("radio", name="Administrators").check()
    owner.get_by_label("Grace period (days)").fill("14")
    owner.get_by_role("button", name="Save two-factor policy").click()
    expect(owner.get_by_role("status")).to_contain_text(
        "The two-factor policy was saved. Required for administrators"
    )
    expect(owner.get_by_role("radio", name="Administrators")).to_be_checked()
    expect(owner.get_by_text("A grace period now runs until")).to_be_visible()
    shot(owner, "admin-settings-two-factor")

    owner.get_by_role("link", name="Audit log").click()
    expect(owner.get_by_role("heading", name="Audit log")).to_be_visible()
    expect(owner.locator("table.events")).to_contain_text("member.role_change")
    shot(owner, "admin-audit")
    owner.get_by_label("Event").select_option("member.role_change")
    owner.get_by_role("button", name="Filter").click()
    expect(owner.locator("table.events tbody tr")).to_have_count(1)
    expect(owner.locator("table.events tbody tr")).to_contain_text("member → sender")
    shot(owner, "admin-audit-filtered")
    with owner.expect_download() as download:
        owner.get_by_role("link", name=re.compile("Download these as JSON lines")).click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert len(lines) == 1 and '"event": "member.role_change"' in lines[0]

    owner.get_by_role("link", name="Overview").click()
    expect(owner.locator("table.events")).to_contain_text("audit.export")
    adoption = owner.locator("#two-factor")
    expect(adoption.locator(".number")).to_have_text("0 / 2")
    expect(adoption).to_contain_text("Required for administrators")
    shot(owner, "admin-overview-later")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_switching_the_active_organisation(app, devices: Callable[[], Page]) -> None:  # type: ignore[no-untyped-def]
    from idp.extensions import db
    from idp.services import orgs

    user = make_user(app, "jane@acme.test", role="member")
    beta = orgs.create("beta", "Beta")
    orgs.add_member(user, beta, orgs.get_role(beta, "admin"))
    db.session.commit()

    jane = devices()
    sign_in(jane, "jane@acme.test", STRONG_PASSWORD)
    expect(jane.get_by_role("heading", name="Your permissions in Acme")).to_be_visible()
    expect(jane.get_by_role("link", name="Admin", exact=True)).to_have_count(0)
    shot(jane, "admin-account-two-organisations")

    jane.get_by_role("button", name="Switch to Beta").click()
    expect(jane.get_by_role("status")).to_have_text("You now act in Beta.")
    expect(jane.get_by_role("heading", name="Your permissions in Beta")).to_be_visible()
    expect(jane.locator("#permissions dt")).to_contain_text(["audit.read", "members.manage"])
    expect(jane.get_by_role("button", name="Switch to Acme")).to_be_visible()
    shot(jane, "admin-account-switched")
    jane.get_by_role("link", name="Admin", exact=True).click()
    expect(jane.get_by_text("Administering Beta")).to_be_visible()
