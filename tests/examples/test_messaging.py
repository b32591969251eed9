"""The messaging app behind the gateway: it checks each page's permission itself (and agrees
with the demo policy), refuses cross-site forms, and works as an inbox, editor, settings,
billing and member directory. The assertion itself is tested in ``test_messaging_assertion``.

The app runs in-process (Flask's test client); its key set comes over real HTTP from a loopback
server, as it would from the IdP, holding a P-256 key generated for this run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwk

from examples.messaging.app import _refuse_unguarded_views
from examples.messaging.store import PAGE_SIZE, Store
from gateway.policy import load
from tests.examples.support import APP_PERMISSIONS, Browser, JwksServer, browser, text

DEMO_POLICY = Path(__file__).resolve().parents[2] / "gateway" / "demo_policy.toml"


class Page(NamedTuple):
    """One page of the app: ``permission`` None means any signed-in caller; ``ok`` is the status
    of a success (a POST redirects to the page it changed)."""

    method: str
    rule: str  # the Flask rule
    path: str
    permission: str | None
    form: dict[str, str] = {}  # noqa: RUF012 -- never mutated
    ok: int = 200


PAGES = [
    Page("GET", "/", "/", None),
    Page("GET", "/inbox", "/inbox", None),
    Page("GET", "/messages/<int:message_id>", "/messages/1", None),
    Page("POST", "/messages", "/messages", "messages.send", {"body": "Hello"}, 303),
    Page("GET", "/messages/<int:message_id>/edit", "/messages/1/edit", "messages.edit"),
    Page(
        "POST",
        "/messages/<int:message_id>/edit",
        "/messages/1/edit",
        "messages.edit",
        {"body": "Edited"},
        303,
    ),
    Page("GET", "/settings", "/settings", "settings.manage"),
    Page(
        "POST",
        "/settings",
        "/settings",
        "settings.manage",
        {"workspace_name": "Demo team", "announcement": ""},
        303,
    ),
    Page("GET", "/billing", "/billing", "billing.manage"),
    Page("POST", "/billing/plan", "/billing/plan", "billing.manage", {"plan": "team"}, 303),
    Page("GET", "/members", "/members", "user_data.read"),
    Page("GET", "/members/export.json", "/members/export.json", "user_data.read"),
]
GUARDED_PAGES = [page for page in PAGES if page.permission]


def page_id(page: Page) -> str:
    return f"{page.method} {page.path}"


def request(who: Browser, page: Page) -> Any:
    return who.get(page.path) if page.method == "GET" else who.post(page.path, page.form)


# --- the app agrees with the gateway's policy --------------------------------------------------


def test_every_page_is_in_the_matrix(app: Flask) -> None:
    """A page added to the app without a line in ROUTES (and so without tests) fails here."""
    served = {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in ("static", "healthz")
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    assert served == {(page.method, page.rule) for page in PAGES}


def test_a_view_without_the_guard_stops_the_app(app: Flask) -> None:
    app.add_url_rule("/debug", "debug", lambda: "everything")
    with pytest.raises(RuntimeError, match="debug"):
        _refuse_unguarded_views(app)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_app_and_demo_policy_ask_for_the_same_permission(page: Page) -> None:
    route = load(DEMO_POLICY).match(page.method, page.path)
    assert route is not None and not route.public
    assert route.permissions == ({page.permission} if page.permission else set())


def test_public_paths_need_no_assertion(client: FlaskClient, idp: JwksServer) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    css = client.get("/_static/messaging.css")
    assert css.status_code == 200
    css.close()
    static_route = load(DEMO_POLICY).match("GET", "/_static/messaging.css")
    assert static_route is not None and static_route.public
    assert idp.fetches == 0


# --- permissions: each page with and without what it needs ------------------------------------


def seed_message(client: FlaskClient, key: jwk.ECKey) -> None:
    response = browser(client, key, "messages.send").post("/messages", {"body": "First"})
    assert response.status_code == 303


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_page_allowed_with_its_permission(
    client: FlaskClient, gateway_key: jwk.ECKey, page: Page
) -> None:
    seed_message(client, gateway_key)
    who = browser(client, gateway_key, *([page.permission] if page.permission else []))
    response = request(who, page)
    assert response.status_code == page.ok, text(response)


@pytest.mark.parametrize("page", GUARDED_PAGES, ids=page_id)
def test_page_refused_without_its_permission(
    client: FlaskClient, gateway_key: jwk.ECKey, page: Page
) -> None:
    """Everything else but that one permission: the app names what is missing."""
    seed_message(client, gateway_key)
    who = browser(client, gateway_key, *(p for p in APP_PERMISSIONS if p != page.permission))
    response = request(who, page)
    assert response.status_code == 403
    assert f"<code>{page.permission}</code>" in text(response)


def test_viewer_reads_but_has_no_forms(client: FlaskClient, gateway_key: jwk.ECKey) -> None:
    seed_message(client, gateway_key)
    page = text(browser(client, gateway_key).get("/inbox"))
    assert "First" in page
    assert "<form" not in page
    assert "/edit" not in page


# --- CSRF ---------------------------------------------------------------------------------------


def test_post_without_csrf_token_is_refused(client: FlaskClient, gateway_key: jwk.ECKey) -> None:
    alice = browser(client, gateway_key, "messages.send")
    response = alice.post("/messages", {"body": "Sneaky"}, csrf=False)
    assert response.status_code == 403
    assert "Form refused" in text(response)
    assert "Sneaky" not in text(alice.get("/inbox"))


def test_csrf_token_of_another_session_is_refused(
    client: FlaskClient, gateway_key: jwk.ECKey
) -> None:
    attacker = browser(client, gateway_key, "messages.send", sub="user-mallory", sid="sid-m")
    victim = browser(client, gateway_key, "messages.send")
    stolen = attacker.csrf_token()
    response = victim.post("/messages", {"body": "Sneaky", "csrf_token": stolen}, csrf=False)
    assert response.status_code == 403
    # The same person's token from an earlier session is no good either.
    earlier = browser(client, gateway_key, "messages.send", sid="sid-alice-0").csrf_token()
    response = victim.post("/messages", {"body": "Sneaky", "csrf_token": earlier}, csrf=False)
    assert response.status_code == 403


def test_cross_site_post_is_refused_even_with_a_token(
    client: FlaskClient, gateway_key: jwk.ECKey
) -> None:
    alice = browser(client, gateway_key, "messages.send")
    for site in ("cross-site", "same-site"):
        response = alice.post("/messages", {"body": "x"}, headers={"Sec-Fetch-Site": site})
        assert response.status_code == 403
    response = alice.post("/messages", {"body": "x"}, headers={"Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 303


# --- the app at work -----------------------------------------------------------------------------


def test_send_then_edit_a_message(client: FlaskClient, gateway_key: jwk.ECKey) -> None:
    alice = browser(client, gateway_key, "messages.send", "messages.edit")
    bob = browser(
        client, gateway_key, "messages.edit", sub="user-bob", email="bob@demo.test", sid="sid-bob"
    )
    sent = alice.post("/messages", {"body": "Lunch at <b>noon</b>?"})
    assert sent.status_code == 303
    assert sent.headers["Location"] == "/inbox#m1"
    inbox = text(alice.get("/inbox"))
    assert "Lunch at &lt;b&gt;noon&lt;/b&gt;?" in inbox  # escaped, never markup
    assert 'href="/messages/1/edit"' in inbox

    second = alice.post("/messages", {"body": "Second"})
    assert second.status_code == 303
    inbox = text(alice.get("/inbox"))
    assert inbox.index("Second") < inbox.index("Lunch")  # newest first

    form = text(bob.get("/messages/1/edit"))
    assert "someone else's message" in form
    edited = bob.post("/messages/1/edit", {"body": "Lunch at one"})
    assert edited.status_code == 303
    shown = text(bob.get(edited.headers["Location"]))
    assert "Lunch at one" in shown
    assert "edited by bob@demo.test" in shown
    assert "Message saved." in shown


def test_inbox_pages_back_through_older_messages(
    client: FlaskClient, gateway_key: jwk.ECKey, tmp_path: Path
) -> None:
    store = Store(tmp_path / "messaging.db")  # the app's own file: seeded without 51 requests
    for n in range(1, PAGE_SIZE + 2):
        store.send("demo", "user-alice", "alice@demo.test", f"Message number {n}.")
    alice = browser(client, gateway_key)
    first = text(alice.get("/inbox"))
    assert "Message number 51." in first and "Message number 2." in first
    assert "Message number 1." not in first
    assert 'href="/inbox?before=2"' in first
    older = text(alice.get("/inbox?before=2"))
    assert "Message number 1." in older and "Message number 2." not in older
    assert "Older messages" not in older


def test_empty_message_is_refused_with_the_reason(
    client: FlaskClient, gateway_key: jwk.ECKey
) -> None:
    response = browser(client, gateway_key, "messages.send").post("/messages", {"body": "  "})
    assert response.status_code == 400
    assert "cannot be empty" in text(response)


def test_organisations_do_not_see_each_other(client: FlaskClient, gateway_key: jwk.ECKey) -> None:
    seed_message(client, gateway_key)
    outsider = browser(client, gateway_key, *APP_PERMISSIONS, org="other", sub="user-o", sid="o")
    assert "First" not in text(outsider.get("/inbox"))
    assert outsider.get("/messages/1").status_code == 404
    assert outsider.get("/messages/1/edit").status_code == 404
    assert outsider.get("/members/export.json").json["members"] == [  # only themself
        {
            "sub": "user-o",
            "email": "alice@demo.test",
            "first_seen": pytest.approx(time.time(), abs=60),
            "last_seen": pytest.approx(time.time(), abs=60),
            "messages": [],
        }
    ]


def test_member_directory_and_export(client: FlaskClient, gateway_key: jwk.ECKey) -> None:
    seed_message(client, gateway_key)
    bob = browser(client, gateway_key, sub="user-bob", email="bob@demo.test", sid="sid-bob")
    assert bob.get("/inbox").status_code == 200
    reader = browser(client, gateway_key, "user_data.read", sid="sid-alice-2")

    directory = text(reader.get("/members"))
    assert "alice@demo.test" in directory and "bob@demo.test" in directory

    export = reader.get("/members/export.json")
    assert export.status_code == 200
    assert export.mimetype == "application/json"
    assert export.headers["Content-Disposition"] == 'attachment; filename="members-demo.json"'
    document = export.json
    assert document["org"] == "demo"
    by_email = {m["email"]: m for m in document["members"]}
    assert set(by_email) == {"alice@demo.test", "bob@demo.test"}
    assert [m["body"] for m in by_email["alice@demo.test"]["messages"]] == ["First"]
    assert by_email["bob@demo.test"]["messages"] == []


def test_settings_change_the_workspace(client: FlaskClient, gateway_key: jwk.ECKey) -> None:
    admin = browser(client, gateway_key, "settings.manage")
    saved = admin.post("/settings", {"workspace_name": "Night shift", "announcement": "Hi all"})
    assert saved.status_code == 303
    page = text(admin.get("/inbox"))
    assert "Night shift</a>" in page and "Hi all" in page
    bad = admin.post("/settings", {"workspace_name": "", "announcement": ""})
    assert bad.status_code == 400


def test_billing_plan_change(client: FlaskClient, gateway_key: jwk.ECKey) -> None:
    owner = browser(client, gateway_key, "billing.manage")
    assert "Free" in text(owner.get("/billing"))
    changed = owner.post("/billing/plan", {"plan": "team"})
    assert changed.status_code == 303
    page = text(owner.get(changed.headers["Location"]))
    assert "Plan changed." in page and "<dd>Team</dd>" in page
    assert owner.post("/billing/plan", {"plan": "platinum"}).status_code == 400


def test_plan_too_small_for_the_members_is_refused(
    client: FlaskClient, gateway_key: jwk.ECKey
) -> None:
    owner = browser(client, gateway_key, "billing.manage")
    assert owner.post("/billing/plan", {"plan": "team"}).status_code == 303
    for n in range(6):
        browser(client, gateway_key, sub=f"user-{n}", email=f"{n}@demo.test").get("/inbox")
    refused = owner.post("/billing/plan", {"plan": "free"})
    assert refused.status_code == 400
    assert "allows 5 members" in text(refused)
    assert "<dd>Team</dd>" in text(owner.get("/billing"))


# --- pages: who is signed in, no inline code, strict headers ----------------------------------


def test_pages_show_the_caller_and_keep_to_the_csp(
    client: FlaskClient, gateway_key: jwk.ECKey
) -> None:
    seed_message(client, gateway_key)
    owner = browser(client, gateway_key, *APP_PERMISSIONS)
    for path in ("/inbox", "/messages/1", "/messages/1/edit", "/settings", "/billing", "/members"):
        response = owner.get(path)
        page = text(response)
        assert response.status_code == 200, path
        assert "alice@demo.test" in page and ">demo</span>" in page
        assert 'href="/_bascule/logout"' in page
        assert "<script" not in page and "style=" not in page and "<style" not in page
        assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert response.headers["Cache-Control"] == "no-store"
    refused = client.get("/inbox")
    assert refused.headers["Content-Security-Policy"].startswith("default-src 'self'")
