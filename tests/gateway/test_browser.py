"""A person at a real browser, through the gateway: sent to sign in and back, sending a
message; an admin takes ``messages.send`` away and the next send is refused; the admin signs
the member out everywhere and the next request goes back to sign-in."""

from __future__ import annotations

import pytest

from idp.services import authz, members, orgs, roles
from tests.browser.support import chromium, fill_sign_in, new_tab, shot
from tests.gateway.conftest import Stack
from tests.support import STRONG_PASSWORD, cli_context, make_user

pytestmark = pytest.mark.browser

from playwright.sync_api import expect  # noqa: E402


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_member_sends_then_loses_the_permission_then_the_session(stack: Stack) -> None:
    make_user(stack.idp, "olga@demo.test", org_slug="demo", role="owner", name="Olga Owner")
    mo = make_user(stack.idp, "mo@demo.test", org_slug="demo", role="member", name="Mo Member")
    demo = orgs.get("demo")
    writer = roles.create(
        authz.operator(demo), cli_context(), "writer", frozenset({"messages.send", "messages.edit"})
    )
    membership = orgs.membership(mo, demo)
    assert membership is not None
    members.change_role(authz.operator(demo), cli_context(), membership.id, writer.name)

    with chromium() as (browser, problems):
        member = new_tab(browser, problems, base_url=stack.gateway_url, width=1024, height=720)
        member.goto("/inbox")
        expect(member.get_by_role("heading", name="Sign in")).to_be_visible()
        assert member.url.startswith(stack.idp_url + "/login")
        fill_sign_in(member, "mo@demo.test", STRONG_PASSWORD)
        expect(member.get_by_role("heading", name="Inbox")).to_be_visible()
        assert member.url == stack.gateway_url + "/inbox"
        member.get_by_label("New message to demo").fill("Hello from behind the gateway")
        member.get_by_role("button", name="Send").click()
        expect(member.get_by_text("Hello from behind the gateway")).to_be_visible()
        shot(member, "gateway-inbox-after-send")

        # The owner, at the IdP's console, takes messages.send away from the writer role.
        owner = new_tab(browser, problems, base_url=stack.idp_url, width=1024, height=720)
        owner.goto("/login")
        fill_sign_in(owner, "olga@demo.test", STRONG_PASSWORD)
        owner.goto("/admin/roles")
        owner.locator("table.roles tbody tr").filter(has_text="writer").get_by_role(
            "link", name="Edit"
        ).click()
        owner.get_by_role("checkbox", name="messages.send").uncheck()
        owner.get_by_role("button", name="Save permissions").click()
        expect(owner.get_by_role("status")).to_be_visible()

        # The member's very next send is refused by the gateway.
        member.get_by_label("New message to demo").fill("Am I still allowed?")
        member.get_by_role("button", name="Send").click()
        expect(member.get_by_role("heading", name="Not allowed")).to_be_visible()
        shot(member, "gateway-send-refused")

        # The owner signs the member out everywhere: the next request goes back to sign in.
        owner.goto("/admin/members")
        row = owner.locator("tr").filter(has_text="mo@demo.test")
        row.get_by_role("button", name="Sign out everywhere").click()
        expect(owner.get_by_role("status")).to_be_visible()
        member.goto("/inbox")
        expect(member.get_by_role("heading", name="Sign in")).to_be_visible()
        assert member.url.startswith(stack.idp_url + "/login")
        shot(member, "gateway-back-to-sign-in")
