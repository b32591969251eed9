"""The admin console (/admin) through the real HTTP stack, as an owner, an admin and a member.

Every page renders for an owner; a plain member is refused each page and each form (403) and
nothing changes; each form does what it says and the change is in the database and the audit
log; rules the services enforce (bounds, the last owner, no granting what one lacks) come
back as a readable refusal; a form without its CSRF token is refused.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
from datetime import UTC, datetime
from html import unescape
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from flask import Flask
from sqlalchemy import select

from idp.extensions import db
from idp.models import AuditEvent, Membership, Organisation, Role, User
from idp.services import audit, orgs
from idp.services.audit import Actor
from tests.support import STRONG_PASSWORD, Browsers, csrf_token, make_user, post_form, sign_in

OWNER = "olivia@acme.test"
MEMBER = "jane@acme.test"
INVITE_LINK = re.compile(r'id="invite-link"[^>]*value="([^"]+)"')
ALERT = re.compile(r'<div class="alert" role="alert">\s*<p>(.*?)</p>', re.S)
NOTICE = re.compile(r'<div class="notice" role="status"><p>(.*?)</p>', re.S)

ADMIN_PAGES = ["/admin", "/admin/members", "/admin/roles", "/admin/settings", "/admin/audit"]


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def member(app: Flask, owner: User) -> User:
    return make_user(app, MEMBER, role="member")


@pytest.fixture
def as_owner(browsers: Browsers, owner: User) -> httpx.Client:
    return browsers.signed_in(OWNER)


def membership_id(address: str, org_slug: str = "acme") -> int:
    db.session.rollback()
    found = db.session.scalar(
        select(Membership.id)
        .join(User)
        .join(Organisation)
        .where(User.email == address, Organisation.slug == org_slug)
    )
    db.session.rollback()
    assert found is not None, f"{address} is not a member of {org_slug}"
    return found


def fresh(query: Any) -> Any:
    """A value as the server committed it (our own transaction ended before and after)."""
    db.session.rollback()
    db.session.expire_all()
    value = db.session.scalar(query)
    db.session.rollback()
    return value


def role_of(address: str) -> str | None:
    return fresh(
        select(Role.name).join(Membership).join(User).where(User.email == address)  # type: ignore[arg-type]
    )


def role_permissions(name: str) -> set[str] | None:
    role = fresh(
        select(Role).join(Organisation).where(Role.name == name, Organisation.slug == "acme")
    )
    return None if role is None else set(role.permissions)


def events(name: str) -> list[AuditEvent]:
    db.session.rollback()
    found = list(
        db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.seq)
        )
    )
    db.session.rollback()
    return found


def act(client: httpx.Client, path: str, data: dict[str, str] | None = None) -> httpx.Response:
    """Press a button: POST with the session's CSRF token (any page of ours carries it)."""
    token = csrf_token(client.get("/account").text)
    return client.post(path, data={"csrf_token": token, **(data or {})})


def followed(client: httpx.Client, response: httpx.Response) -> str:
    """The page a PRG redirect leads to."""
    assert response.status_code == 303, response.text[:500]
    return client.get(response.headers["location"]).text


def alert(page: str) -> str:
    match = ALERT.search(page)
    assert match, "no alert on the page"
    return unescape(match.group(1))


def permissions_on_account_page(client: httpx.Client) -> list[str]:
    page = client.get("/account").text
    block = re.search(r'<dl id="permissions"[^>]*>(.*?)</dl>', page, re.S)
    return re.findall(r"<dt><code>([^<]+)</code></dt>", block.group(1)) if block else []


# --- pages and who may see them ----------------------------------------------------------------


def test_every_page_renders_for_an_owner(app, as_owner: httpx.Client, member: User) -> None:
    account = as_owner.get("/account").text
    assert '<a href="/admin">Admin</a>' in account
    for path, heading in zip(
        ADMIN_PAGES,
        ["Overview", "Members", "Roles", "Security settings", "Audit log"],
        strict=True,
    ):
        page = as_owner.get(path)
        assert page.status_code == 200, path
        assert f"<h1>{heading}</h1>" in page.text
        assert "Administering <strong>Acme</strong>" in page.text
        assert 'aria-current="page"' in page.text
        assert "<script" not in page.text and "style=" not in page.text  # strict CSP
    overview = as_owner.get("/admin").text
    assert '<p class="number">2</p>' in overview  # Olivia and Jane
    assert '<p class="number">0 / 2</p>' in overview  # two-factor adoption: nobody yet
    assert "Not required: members may still add a second factor" in overview
    assert "login.success" in overview  # recent security events
    member_role = fresh(select(Role.id).join(Organisation).where(Role.name == "member"))
    role_page = as_owner.get(f"/admin/roles/{member_role}").text
    assert "Built-in roles cannot be changed" in role_page and "Send messages" in role_page
    confirm = as_owner.get(f"/admin/members/{membership_id(MEMBER)}/remove").text
    assert f"Remove {MEMBER}?" in confirm
    reset = as_owner.get(f"/admin/members/{membership_id(MEMBER)}/factors/reset").text
    assert f"Reset the second factors of {MEMBER}?" in reset
    assert "<h2>Two-factor authentication</h2>" in as_owner.get("/admin/settings").text


def test_member_is_refused_every_page_and_form(app, browsers: Browsers, member: User) -> None:
    jane = browsers.signed_in(MEMBER)
    assert '<a href="/admin">Admin</a>' not in jane.get("/account").text
    own = membership_id(MEMBER)
    for path in [
        *ADMIN_PAGES,
        "/admin/audit.jsonl",
        f"/admin/members/{own}/remove",
        f"/admin/members/{own}/factors/reset",
        "/admin/roles/1",
    ]:
        response = jane.get(path)
        assert response.status_code == 403, path
        assert "You do not have access" in response.text or "permission" in response.text
    owner_id = membership_id(OWNER)
    token = csrf_token(jane.get("/account").text)
    forms = {
        "/admin/members/invite": {"email": "mallory@evil.test", "role": "owner"},
        f"/admin/members/{own}/role": {"role": "owner"},
        f"/admin/members/{owner_id}/disable": {},
        f"/admin/members/{owner_id}/remove": {},
        f"/admin/members/{owner_id}/revoke-sessions": {},
        f"/admin/members/{owner_id}/factors/reset": {},
        "/admin/roles": {"name": "root", "permissions": "members.manage"},
        "/admin/settings": {
            "session_idle_minutes": "30",
            "session_max_hours": "12",
            "password_min_length": "12",
        },
        "/admin/settings/2fa": {"mfa_policy": "everyone", "mfa_grace_days": "3"},
    }
    for path, data in forms.items():
        assert jane.post(path, data={"csrf_token": token, **data}).status_code == 403, path
    assert role_of(MEMBER) == "member"
    assert fresh(select(User.id).where(User.email == "mallory@evil.test")) is None
    assert role_permissions("root") is None
    assert fresh(select(User.is_active).where(User.email == OWNER)) is True
    assert fresh(select(Organisation.mfa_policy).where(Organisation.slug == "acme")) == "off"
    assert events("mfa.reset") == [] and events("org.mfa_policy_change") == []


def test_nav_shows_only_the_sections_one_may_use(app, browsers: Browsers, owner: User) -> None:
    acme = orgs.get("acme")
    orgs.create_role(acme, "auditor", frozenset({"audit.read"}))
    make_user(app, "audrey@acme.test", role="auditor")
    audrey = browsers.signed_in("audrey@acme.test")
    overview = audrey.get("/admin")
    assert overview.status_code == 200
    assert 'href="/admin/audit"' in overview.text
    assert 'href="/admin/members"' not in overview.text
    assert 'href="/admin/settings"' not in overview.text
    assert audrey.get("/admin/audit").status_code == 200
    assert audrey.get("/admin/members").status_code == 403
    assert audrey.get("/admin/settings").status_code == 403


# --- members ---------------------------------------------------------------------------------


def test_invite_shows_the_link_once_and_mails_it(app, as_owner: httpx.Client, base_url) -> None:
    page = as_owner.get("/admin/members").text
    response = post_form(
        as_owner,
        "/admin/members/invite",
        {"email": "Ivy@Acme.test", "name": "Ivy Newcomer", "role": "member"},
        page=page,
    )
    shown = followed(as_owner, response)
    assert NOTICE.search(shown).group(1) == (  # type: ignore[union-attr]
        "ivy@acme.test was invited as member. The invitation was also mailed."
    )
    link = unescape(INVITE_LINK.search(shown).group(1))  # type: ignore[union-attr]
    assert link.startswith(f"{base_url}/invite/")
    outbox = app.extensions["bascule"].settings.instance_dir / "outbox"
    mail = email.message_from_bytes(
        sorted(outbox.glob("*.eml"))[-1].read_bytes(), policy=email.policy.default
    )
    assert mail["To"] == "ivy@acme.test" and link in mail.get_content()  # type: ignore[attr-defined]
    assert INVITE_LINK.search(as_owner.get("/admin/members").text) is None  # shown only once
    assert "invited" in as_owner.get("/admin/members").text
    assert role_of("ivy@acme.test") == "member"
    invited = events("member.invite")
    assert [(e.target, e.details) for e in invited] == [("ivy@acme.test", {"role": "member"})]
    assert [e.target for e in events("invitation.send")] == ["ivy@acme.test"]
    with httpx.Client(base_url=base_url) as ivy:
        assert ivy.get(urlsplit(link).path).status_code == 200

    # A new link for someone who has not chosen a password yet; the first still works.
    response = act(as_owner, f"/admin/members/{membership_id('ivy@acme.test')}/resend")
    second = unescape(INVITE_LINK.search(followed(as_owner, response)).group(1))  # type: ignore[union-attr]
    assert second != link and second.startswith(f"{base_url}/invite/")
    assert len(events("invitation.send")) == 2 and len(events("member.invite")) == 1

    # Mistakes are explained on the form, which keeps what was typed.
    bad = act(as_owner, "/admin/members/invite", {"email": "not an address", "role": "member"})
    assert bad.status_code == 400
    assert alert(bad.text) == "'not an address' is not an email address."
    assert 'value="not an address"' in bad.text
    again = act(as_owner, "/admin/members/invite", {"email": "ivy@acme.test", "role": "member"})
    assert again.status_code == 400
    assert alert(again.text) == "ivy@acme.test is already a member of 'acme'."


def test_resend_is_refused_once_a_password_is_set(app, as_owner: httpx.Client, member) -> None:
    response = act(as_owner, f"/admin/members/{membership_id(MEMBER)}/resend")
    assert alert(followed(as_owner, response)) == f"{MEMBER} has already set a password."


def test_role_change_applies_on_the_members_next_request(
    app, browsers: Browsers, as_owner: httpx.Client, member: User
) -> None:
    jane = browsers.signed_in(MEMBER)
    assert permissions_on_account_page(jane) == ["messages.edit", "messages.send"]
    response = act(as_owner, f"/admin/members/{membership_id(MEMBER)}/role", {"role": "viewer"})
    page = followed(as_owner, response)
    assert f"{MEMBER} now has the role viewer, from their next request on." in page
    assert role_of(MEMBER) == "viewer"
    assert permissions_on_account_page(jane) == []
    assert "None: your role lets you sign in" in jane.get("/account").text
    change = events("member.role_change")[-1]
    assert (change.target, change.details) == (MEMBER, {"before": "member", "after": "viewer"})


def test_disable_enable_and_the_rules_that_protect_owners(
    app, browsers: Browsers, as_owner: httpx.Client, member: User
) -> None:
    jane = browsers.signed_in(MEMBER)
    response = act(as_owner, f"/admin/members/{membership_id(MEMBER)}/disable")
    assert f"{MEMBER} is disabled: signed out everywhere" in followed(as_owner, response)
    assert jane.get("/account").status_code == 302  # her session ended at once
    assert sign_in(browsers.new(), MEMBER, STRONG_PASSWORD).status_code == 401
    assert "disabled" in as_owner.get("/admin/members").text

    response = act(as_owner, f"/admin/members/{membership_id(MEMBER)}/enable")
    assert f"{MEMBER} is enabled again and can sign in." in followed(as_owner, response)
    browsers.signed_in(MEMBER)  # she can sign in again

    # One's own account, and the last owner, are refused with the reason.
    response = act(as_owner, f"/admin/members/{membership_id(OWNER)}/disable")
    assert alert(followed(as_owner, response)) == "You cannot disable your own account."
    response = act(as_owner, f"/admin/members/{membership_id(OWNER)}/role", {"role": "admin"})
    assert alert(followed(as_owner, response)) == f"{OWNER} is the last owner of 'acme'."
    assert role_of(OWNER) == "owner"
    assert fresh(select(User.is_active).where(User.email == OWNER)) is True


def test_revoke_sessions_signs_the_member_out_everywhere(
    app, browsers: Browsers, as_owner: httpx.Client, member: User
) -> None:
    phone, laptop = browsers.signed_in(MEMBER), browsers.signed_in(MEMBER)
    response = act(as_owner, f"/admin/members/{membership_id(MEMBER)}/revoke-sessions")
    page = followed(as_owner, response)
    assert f"{MEMBER} was signed out everywhere (2 session(s) ended)." in page
    assert phone.get("/account").status_code == 302
    assert laptop.get("/account").status_code == 302
    assert events("session.revoke_all")[-1].details == {"count": 2}


def test_remove_asks_first_then_removes(
    app, browsers: Browsers, as_owner: httpx.Client, member: User
) -> None:
    jane = browsers.signed_in(MEMBER)
    member_id = membership_id(MEMBER)
    confirm = as_owner.get(f"/admin/members/{member_id}/remove")
    assert confirm.status_code == 200 and "Remove from Acme" in confirm.text
    response = post_form(as_owner, f"/admin/members/{member_id}/remove", {}, page=confirm.text)
    assert f"{MEMBER} was removed from Acme." in followed(as_owner, response)
    assert role_of(MEMBER) is None
    assert permissions_on_account_page(jane) == []  # her next request has nothing
    assert as_owner.get(f"/admin/members/{member_id}/remove").status_code == 404
    assert events("member.remove")[-1].target == MEMBER


# --- roles -----------------------------------------------------------------------------------


def test_custom_role_create_edit_delete(app, as_owner: httpx.Client, member: User) -> None:
    page = as_owner.get("/admin/roles").text
    assert "Send messages" in page and "Read the audit log" in page  # the checklist explains
    response = post_form(
        as_owner, "/admin/roles", {"name": "sender", "permissions": "messages.send"}, page=page
    )
    assert "The role sender was created." in followed(as_owner, response)
    assert role_permissions("sender") == {"messages.send"}
    assert events("role.create")[-1].details == {"permissions": ["messages.send"]}

    role_id = fresh(select(Role.id).where(Role.name == "sender"))
    edit = as_owner.get(f"/admin/roles/{role_id}").text
    assert 'value="messages.send"\n      checked' in edit
    response = as_owner.post(
        f"/admin/roles/{role_id}",
        data={"csrf_token": csrf_token(edit), "permissions": ["messages.send", "audit.read"]},
    )
    assert "The role sender was saved." in followed(as_owner, response)
    assert role_permissions("sender") == {"messages.send", "audit.read"}

    # Refusals are explained: a bad name, a duplicate, an unknown permission, a built-in role.
    for data, message in [
        ({"name": "Not Valid!"}, "'Not Valid!' is not a valid role name"),
        ({"name": "sender"}, "Role 'sender' already exists in 'acme'."),
        ({"name": "x", "permissions": "root.all"}, "Unknown permission(s): root.all."),
    ]:
        refused = post_form(as_owner, "/admin/roles", data)
        assert refused.status_code == 400
        assert alert(refused.text).startswith(message)
    member_role = fresh(select(Role.id).where(Role.name == "member"))
    builtin = post_form(
        as_owner, f"/admin/roles/{member_role}", {"permissions": "messages.send"}, page=edit
    )
    assert builtin.status_code == 400 and "is a built-in role" in alert(builtin.text)

    # Deleting is refused while someone holds the role, and works once nobody does.
    act(as_owner, f"/admin/members/{membership_id(MEMBER)}/role", {"role": "sender"})
    response = act(as_owner, f"/admin/roles/{role_id}/delete")
    assert "still held by members" in alert(followed(as_owner, response))
    act(as_owner, f"/admin/members/{membership_id(MEMBER)}/role", {"role": "member"})
    response = act(as_owner, f"/admin/roles/{role_id}/delete")
    assert "The role was deleted." in followed(as_owner, response)
    assert role_permissions("sender") is None


@pytest.fixture
def as_admin(browsers: Browsers, app: Flask, owner: User) -> httpx.Client:
    make_user(app, "adam@acme.test", role="admin", name="Adam Admin")
    return browsers.signed_in("adam@acme.test")


def test_an_admin_cannot_grant_billing_or_touch_an_owner(
    app, as_admin: httpx.Client, member: User
) -> None:
    roles_page = as_admin.get("/admin/roles").text
    assert re.search(r'value="billing.manage"\s+disabled', roles_page)  # shown, not offered
    members_page = as_admin.get("/admin/members").text
    assert '<option value="owner"' not in members_page

    # Sending it anyway (a crafted form) is refused by the service, and nothing changes.
    attempts = {
        "/admin/roles": {"name": "payer", "permissions": "billing.manage"},
        "/admin/members/invite": {"email": "eve@acme.test", "role": "owner"},
        f"/admin/members/{membership_id(MEMBER)}/role": {"role": "owner"},
        f"/admin/members/{membership_id(OWNER)}/disable": {},
        f"/admin/members/{membership_id(OWNER)}/remove": {},
        f"/admin/members/{membership_id(OWNER)}/factors/reset": {},
    }
    for path, data in attempts.items():
        response = post_form(as_admin, path, data, page=members_page)
        assert response.status_code == 403, path
        assert "You cannot grant permissions you do not hold: billing.manage." in response.text
    custom = post_form(as_admin, "/admin/roles", {"name": "helper", "permissions": "messages.send"})
    assert custom.status_code == 303
    helper = fresh(select(Role.id).where(Role.name == "helper"))
    widened = post_form(
        as_admin, f"/admin/roles/{helper}", {"permissions": "billing.manage"}, page=roles_page
    )
    assert widened.status_code == 403
    assert role_permissions("payer") is None
    assert role_permissions("helper") == {"messages.send"}
    assert role_of(MEMBER) == "member" and role_of(OWNER) == "owner"
    assert fresh(select(User.id).where(User.email == "eve@acme.test")) is None


# --- settings --------------------------------------------------------------------------------


SETTINGS = {"session_idle_minutes": "15", "session_max_hours": "8", "password_min_length": "14"}


def test_settings_update_within_bounds(app, as_owner: httpx.Client) -> None:
    page = as_owner.get("/admin/settings").text
    assert 'min="5" max="30"' in page  # the instance's bounds, shown on the form
    data = {**SETTINGS, "redirect_origins": "https://App.Example.com\nhttps://b.example.org/"}
    response = post_form(as_owner, "/admin/settings", data, page=page)
    saved = followed(as_owner, response)
    assert "The security settings were saved." in saved
    assert 'value="15"' in saved and "https://app.example.com\nhttps://b.example.org" in saved
    org = fresh(select(Organisation).where(Organisation.slug == "acme"))
    assert (org.session_idle_minutes, org.session_max_hours, org.password_min_length) == (
        15, 8, 14,
    )  # fmt: skip
    change = events("org.settings_change")[-1]
    assert change.details["after"]["redirect_origins"] == [
        "https://app.example.com",
        "https://b.example.org",
    ]


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        (
            {"session_idle_minutes": "0"},
            "“Sign out after inactivity (minutes)” must be between 5 and 30.",
        ),
        ({"session_max_hours": "100000"}, "“Longest session (hours)” must be between 1 and 12."),
        ({"password_min_length": "6"}, "“Shortest password (characters)” must be between 12 and"),
        ({"password_min_length": "twelve"}, "“Shortest password (characters)” must be a whole"),
        ({"redirect_origins": "http://plain.example"}, "'http://plain.example' is not an https"),
    ],
)
def test_settings_out_of_bounds_are_refused_clearly(
    app, as_owner: httpx.Client, changed: dict[str, str], message: str
) -> None:
    response = post_form(as_owner, "/admin/settings", {**SETTINGS, **changed})
    assert response.status_code == 400
    assert alert(response.text).startswith(message)
    for value in changed.values():
        assert value in response.text  # what was typed stays in the form
    org = fresh(select(Organisation).where(Organisation.slug == "acme"))
    assert org.session_idle_minutes is None and org.password_min_length is None
    assert events("org.settings_change") == []


# --- audit log -------------------------------------------------------------------------------


def test_audit_filters_pages_and_download(app, as_owner: httpx.Client, clock) -> None:
    acme, other = orgs.get("acme"), orgs.create("other", "Other")
    db.session.commit()
    base = datetime(2026, 3, 10, 12, tzinfo=UTC).timestamp()
    for n in range(60):
        audit.record(
            "test.bulk",
            actor=Actor(email="bot@acme.test"),
            org_id=acme.id,
            target=f"item-{n}",
            now=base + n,
        )
    audit.record(
        "test.special", actor=Actor(email="carol@acme.test"), org_id=acme.id,
        target="50%_off", details={"note": "needle in details"}, now=base + 86400,
    )  # fmt: skip
    audit.record("test.secret", org_id=other.id, target="other-org-only", now=base)

    page = as_owner.get("/admin/audit").text
    assert "Page 1 of 2" in page and "Older →" in page
    assert "other-org-only" not in page and "test.secret" not in page  # another organisation
    assert 'value="test">every test event</option>' in page  # a family in the event filter
    older = as_owner.get("/admin/audit", params={"page": "2"}).text
    assert "Page 2 of 2" in older and "← Newer" in older

    def shown(**params: str) -> list[str]:
        html = as_owner.get("/admin/audit", params=params).text
        return re.findall(r"<td><code>([a-z_.]+)</code>", html)

    assert shown(actor="CAROL") == ["test.special"]
    assert shown(q="needle") == ["test.special"]
    assert shown(q="50%_") == ["test.special"]  # wildcards are literal text
    assert shown(q="other-org-only") == []
    assert set(shown(event="test")) == {"test.bulk", "test.special"}
    assert shown(since="2026-03-11", until="2026-03-11") == ["test.special"]
    assert "test.special" not in shown(until="2026-03-10")
    bad = as_owner.get("/admin/audit", params={"since": "last tuesday"})
    assert (
        bad.status_code == 400 and alert(bad.text) == "The “From” date must look like 2026-01-31."
    )
    backwards = as_owner.get("/admin/audit", params={"since": "2026-03-12", "until": "2026-03-11"})
    assert backwards.status_code == 400

    download = as_owner.get("/admin/audit.jsonl", params={"actor": "bot@", "q": "item-5"})
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("application/jsonl")
    assert 'attachment; filename="audit-acme-' in download.headers["content-disposition"]
    rows = [json.loads(line) for line in download.text.splitlines()]
    assert [r["target"] for r in rows] == ["item-5", *(f"item-{n}" for n in range(50, 60))]
    assert all(r["event"] == "test.bulk" and len(r["hash"]) == 64 for r in rows)
    everything = [json.loads(x) for x in as_owner.get("/admin/audit.jsonl").text.splitlines()]
    assert [r["seq"] for r in everything] == sorted(r["seq"] for r in everything)
    assert "other-org-only" not in {r["target"] for r in everything}
    export = events("audit.export")[-2]
    assert export.actor_email == OWNER and export.details == {"actor": "bot@", "text": "item-5"}
    assert as_owner.get("/admin/audit.jsonl", params={"until": "31.12.2026"}).status_code == 400


def test_date_filters_cover_whole_days_in_utc(app, as_owner: httpx.Client) -> None:
    acme = orgs.get("acme")
    last_second = datetime(2026, 5, 1, 23, 59, 59, tzinfo=UTC).timestamp()
    audit.record("test.edge", org_id=acme.id, target="edge", now=last_second)
    audit.record("test.edge", org_id=acme.id, target="next", now=last_second + 1)
    day = as_owner.get("/admin/audit", params={"since": "2026-05-01", "until": "2026-05-01"})
    assert "<td>edge</td>" in day.text and "<td>next</td>" not in day.text
    after = as_owner.get("/admin/audit", params={"since": "2026-05-02"})
    assert "<td>edge</td>" not in after.text and "<td>next</td>" in after.text


# --- CSRF ------------------------------------------------------------------------------------


def test_forms_without_csrf_token_are_refused(app, as_owner: httpx.Client, member: User) -> None:
    jane = membership_id(MEMBER)
    sender = orgs.create_role(orgs.get("acme"), "sender", frozenset({"messages.send"}))
    db.session.commit()
    forms = {
        "/admin/members/invite": {"email": "ivy@acme.test", "role": "member"},
        f"/admin/members/{jane}/resend": {},
        f"/admin/members/{jane}/role": {"role": "viewer"},
        f"/admin/members/{jane}/disable": {},
        f"/admin/members/{jane}/enable": {},
        f"/admin/members/{jane}/revoke-sessions": {},
        f"/admin/members/{jane}/remove": {},
        f"/admin/members/{jane}/factors/reset": {},
        "/admin/roles": {"name": "payer", "permissions": "billing.manage"},
        f"/admin/roles/{sender.id}": {"permissions": "audit.read"},
        f"/admin/roles/{sender.id}/delete": {},
        "/admin/settings": SETTINGS,
        "/admin/settings/2fa": {"mfa_policy": "everyone"},
        "/account/org": {"org": "anything"},
    }
    for path, data in forms.items():
        response = as_owner.post(path, data=data)
        assert response.status_code == 400, path
        assert "did not come from this site" in response.text
        forged = as_owner.post(path, data={"csrf_token": "forged", **data})
        assert forged.status_code == 400, path
    assert role_of(MEMBER) == "member"
    assert role_permissions("sender") == {"messages.send"}
    assert role_permissions("payer") is None
    assert [e for e in events("member.invite") if e.target == "ivy@acme.test"] == []
    assert fresh(select(User.id).where(User.email == "ivy@acme.test")) is None
    assert events("mfa.reset") == [] and events("org.mfa_policy_change") == []
