"""OpenID Connect clients managed by an organisation's admins: console and API, over real HTTP.

Each operation is made from the console and from the API (register, list, edit the URIs,
reset the secret, delete), and its effect checked in the database and the audit log. A secret
is shown once and never again. Another organisation's admin finds neither the client nor the
instance's own gateway client (404, as for an id that does not exist); members without
``security.manage`` are refused (403); bad URIs come back as a 400 with a message; and an
organisation admin can register neither a first-party client nor a back-channel URI aimed at
the IdP's own network.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from html import unescape
from typing import Any

import httpx
import pytest
from flask import Flask
from sqlalchemy import select

from idp.extensions import db
from idp.models import AuditEvent, User
from idp.models.oidc import OAuthClient
from idp.services import authz, orgs
from idp.services.bootstrap import GATEWAY_CLIENT_ID
from idp.services.errors import ServiceError
from idp.services.oidc import client_admin, clients
from tests.support import Api, Browsers, csrf_token, make_user, token_for

OWNER = "olivia@acme.test"
PROBLEM = "application/problem+json"
SECRET = re.compile(r'id="client-secret" class="copy" type="text" value="([^"]+)"')
ALERT = re.compile(r'<div class="alert" role="alert">\s*<p>(.*?)</p>', re.S)
NOTICE = re.compile(r'<div class="notice" role="status"><p>(.*?)</p>', re.S)
WIKI = {
    "name": "Team Wiki",
    "type": "confidential",
    "redirect_uris": "https://wiki.example/oidc/callback\r\n\r\n  https://wiki.example/cb2  ",
    "post_logout_redirect_uris": "https://wiki.example/",
    "backchannel_logout_uri": "",
}


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def as_owner(browsers: Browsers, owner: User) -> httpx.Client:
    return browsers.signed_in(OWNER)


@pytest.fixture
def api(app: Flask, owner: User, base_url: str) -> Iterator[Api]:
    client = Api(base_url, token_for(app, owner))
    yield client
    client.client.close()


def act(client: httpx.Client, path: str, data: dict[str, str] | None = None) -> httpx.Response:
    """Submit a form with the session's CSRF token (any page of ours carries it)."""
    token = csrf_token(client.get("/account").text)
    return client.post(path, data={"csrf_token": token, **(data or {})})


def stored(client_id: str) -> OAuthClient | None:
    """The client as the server committed it (our own transaction ends before and after)."""
    db.session.rollback()
    db.session.expire_all()
    found = db.session.get(OAuthClient, client_id)
    if found is not None:
        db.session.expunge(found)
    db.session.rollback()
    return found


def events(prefix: str = "oidc.client.") -> list[AuditEvent]:
    """Events since the test began (the database comes with the gateway's registration)."""
    db.session.rollback()
    query = (
        select(AuditEvent)
        .where(AuditEvent.event.startswith(prefix), AuditEvent.target != GATEWAY_CLIENT_ID)
        .order_by(AuditEvent.seq)
    )
    found = list(db.session.scalars(query))
    db.session.rollback()
    return found


def secret_on(page: str) -> str | None:
    match = SECRET.search(page)
    return unescape(match.group(1)) if match else None


def alert(page: str) -> str:
    match = ALERT.search(page)
    assert match, "no alert on the page"
    return unescape(match.group(1))


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    return response.json()  # type: ignore[no-any-return]


def register(
    client: httpx.Client, form: dict[str, str] | None = None
) -> tuple[str, httpx.Response]:
    """Register through the console; the client id and the page the form leads to."""
    response = act(client, "/admin/clients", form or WIKI)
    assert response.status_code == 303, response.text[:500]
    location = response.headers["location"]
    assert location.startswith("/admin/clients/")
    return location.rsplit("/", 1)[1], client.get(location)


def acme_client(name: str = "Acme app") -> str:
    created = clients.create_client(name, ["https://app.acme.example/cb"], org_id=org_id("acme"))
    return created.client.id


def org_id(slug: str) -> str:
    return orgs.get(slug).id


# --- the console -----------------------------------------------------------------------------


def test_console_registers_and_shows_the_secret_once(app, as_owner: httpx.Client) -> None:
    listing = as_owner.get("/admin/clients")
    assert listing.status_code == 200
    assert "<h1>Applications</h1>" in listing.text
    assert 'href="/admin/clients" aria-current="page"' in listing.text
    assert GATEWAY_CLIENT_ID not in listing.text  # the instance's own client is not theirs
    assert 'href="/admin/clients"' in as_owner.get("/admin").text  # in the navigation

    client_id, page = register(as_owner)
    assert NOTICE.search(page.text).group(1) == "The application Team Wiki was registered."  # type: ignore[union-attr]
    secret = secret_on(page.text)
    assert secret and len(secret) >= 40
    assert page.headers["cache-control"] == "no-store"
    assert f'<code id="client-id">{client_id}</code>' in page.text

    saved = stored(client_id)
    assert saved is not None
    assert saved.org_id == org_id("acme")
    assert saved.first_party is False and saved.auth_method == "client_secret_basic"
    assert saved.redirect_uris == ["https://wiki.example/oidc/callback", "https://wiki.example/cb2"]
    assert saved.post_logout_redirect_uris == ["https://wiki.example/"]
    assert saved.backchannel_logout_uri is None
    assert saved.secret_hash not in (None, secret) and clients.check_secret(saved, secret)

    # Never again: not on a reload, not on the list, not in the API.
    again = as_owner.get(f"/admin/clients/{client_id}").text
    assert secret_on(again) is None and secret not in again
    assert secret not in as_owner.get("/admin/clients").text
    assert "Team Wiki" in as_owner.get("/admin/clients").text

    [created] = events()
    assert created.event == "oidc.client.create"
    assert (created.org_id, created.target, created.actor_email) == (
        org_id("acme"),
        client_id,
        OWNER,
    )
    assert created.details["first_party"] is False


def test_console_edits_resets_and_deletes(app, as_owner: httpx.Client) -> None:
    client_id, page = register(as_owner)
    first_secret = secret_on(page.text)
    path = f"/admin/clients/{client_id}"

    edit = {
        "name": "Team Wiki 2",
        "redirect_uris": "https://wiki.example/new-callback",
        "post_logout_redirect_uris": "",
        "backchannel_logout_uri": "https://wiki.example/bc",
    }
    response = act(as_owner, path, edit)
    assert response.status_code == 303 and response.headers["location"] == path
    shown = as_owner.get(path).text
    assert "The application Team Wiki 2 was saved." in shown
    assert secret_on(shown) is None
    saved = stored(client_id)
    assert saved is not None and saved.name == "Team Wiki 2"
    assert saved.redirect_uris == ["https://wiki.example/new-callback"]
    assert saved.post_logout_redirect_uris == []
    assert saved.backchannel_logout_uri == "https://wiki.example/bc"
    updated = events("oidc.client.update")[-1]
    assert updated.org_id == org_id("acme") and updated.actor_email == OWNER
    assert updated.details["before"]["redirect_uris"] == [
        "https://wiki.example/oidc/callback",
        "https://wiki.example/cb2",
    ]
    assert updated.details["after"]["backchannel_logout_uri"] == "https://wiki.example/bc"
    assert "name" in updated.details["after"]

    # Saving the same values again changes nothing and records nothing.
    act(as_owner, path, edit)
    assert len(events("oidc.client.update")) == 1

    # A new secret, shown once; the old one stops working.
    response = act(as_owner, f"{path}/secret")
    assert response.status_code == 303 and response.headers["location"] == path
    renewed = as_owner.get(path).text
    new_secret = secret_on(renewed)
    assert new_secret and new_secret != first_secret
    assert "A new secret was made. The old one no longer works." in renewed
    assert secret_on(as_owner.get(path).text) is None
    saved = stored(client_id)
    assert saved is not None
    assert clients.check_secret(saved, new_secret)
    assert not clients.check_secret(saved, first_secret)
    [reset] = events("oidc.client.secret_reset")
    assert (reset.org_id, reset.target, reset.actor_email) == (org_id("acme"), client_id, OWNER)

    # Deletion asks first, then deletes.
    confirm = as_owner.get(f"{path}/delete")
    assert confirm.status_code == 200
    assert "<h1>Delete Team Wiki 2?</h1>" in confirm.text
    assert stored(client_id) is not None
    response = act(as_owner, f"{path}/delete")
    assert response.status_code == 303 and response.headers["location"] == "/admin/clients"
    assert "The application Team Wiki 2 was deleted." in as_owner.get("/admin/clients").text
    assert stored(client_id) is None
    assert as_owner.get(path).status_code == 404
    [deleted] = events("oidc.client.delete")
    assert (deleted.org_id, deleted.target, deleted.actor_email) == (
        org_id("acme"),
        client_id,
        OWNER,
    )


def test_console_public_client_has_no_secret(app, as_owner: httpx.Client) -> None:
    client_id, page = register(as_owner, WIKI | {"name": "SPA", "type": "public"})
    assert secret_on(page.text) is None
    assert "Make a new secret" not in page.text
    saved = stored(client_id)
    assert saved is not None and saved.is_public and saved.secret_hash is None
    response = act(as_owner, f"/admin/clients/{client_id}/secret")
    assert response.status_code == 303
    assert alert(as_owner.get(response.headers["location"]).text) == (
        "This client does not authenticate with a secret."
    )
    assert events("oidc.client.secret_reset") == []


def test_console_cannot_make_a_first_party_client(app, as_owner: httpx.Client) -> None:
    """The console has no such choice, and a forged field is not one either."""
    assert "first_party" not in as_owner.get("/admin/clients").text
    client_id, _ = register(as_owner, WIKI | {"first_party": "1", "first-party": "on"})
    saved = stored(client_id)
    assert saved is not None and saved.first_party is False


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (
            {"redirect_uris": "https://wiki.example/cb#section"},
            "“Redirect URI” must not have a fragment: https://wiki.example/cb#section.",
        ),
        (
            {"redirect_uris": "javascript:alert(1)"},
            "“Redirect URI” must be an absolute http(s) URL: javascript:alert(1).",
        ),
        (
            {"redirect_uris": ""},
            "A client using the authorization code flow needs a “Redirect URI”.",
        ),
        (
            {"post_logout_redirect_uris": "https://user:pw@wiki.example/"},
            "“Sign-out redirect URI” must not carry credentials: https://user:pw@wiki.example/.",
        ),
        (
            {"backchannel_logout_uri": "https://[::1/bc"},
            "“Back-channel logout URI” is not a valid URL: https://[::1/bc.",
        ),
        (
            {"redirect_uris": "https://wiki.example/a b"},
            "“Redirect URIs” must not contain spaces or control characters: "
            "'https://wiki.example/a b'.",
        ),
        ({"name": "   "}, "A client needs a name."),
        ({"type": "first-party"}, "Choose whether the application is confidential or public."),
    ],
)
def test_console_refuses_bad_input_with_a_message(
    app, as_owner: httpx.Client, form: dict[str, str], message: str
) -> None:
    response = act(as_owner, "/admin/clients", WIKI | form)
    assert response.status_code == 400
    assert alert(response.text) == message
    if "name" not in form:
        assert 'value="Team Wiki"' in response.text  # the form keeps what was typed
    assert db.session.scalar(select(OAuthClient).where(OAuthClient.name == "Team Wiki")) is None
    assert events() == []


def test_console_edit_refusal_changes_nothing(app, as_owner: httpx.Client) -> None:
    client_id, _ = register(as_owner)
    path = f"/admin/clients/{client_id}"
    bad = {
        "name": "Renamed",
        "redirect_uris": "https://wiki.example/ok\nhttp://wiki.example/plain#frag",
        "post_logout_redirect_uris": "",
        "backchannel_logout_uri": "",
    }
    response = act(as_owner, path, bad)
    assert response.status_code == 400
    assert "must not have a fragment" in alert(response.text)
    assert "http://wiki.example/plain#frag" in response.text  # the form keeps what was typed
    saved = stored(client_id)
    assert saved is not None and saved.name == "Team Wiki"
    assert events("oidc.client.update") == []
    too_many = "\n".join(f"https://wiki.example/{n}" for n in range(21))
    response = act(as_owner, path, bad | {"redirect_uris": too_many})
    assert response.status_code == 400
    assert alert(response.text) == "At most 20 “Redirect URIs” may be registered."


def test_console_forms_need_the_csrf_token(app, as_owner: httpx.Client) -> None:
    client_id, _ = register(as_owner)
    for path, data in {
        "/admin/clients": WIKI | {"name": "Forged"},
        f"/admin/clients/{client_id}": WIKI | {"name": "Forged"},
        f"/admin/clients/{client_id}/secret": {},
        f"/admin/clients/{client_id}/delete": {},
    }.items():
        response = as_owner.post(path, data=data)
        assert response.status_code == 400, path
        assert "did not come from this site" in response.text
    saved = stored(client_id)
    assert saved is not None and saved.name == "Team Wiki"
    assert [e.event for e in events()] == ["oidc.client.create"]


def test_console_refuses_members_without_security_manage(
    app, browsers: Browsers, owner: User
) -> None:
    client_id = acme_client()
    for role in ("viewer", "member"):
        make_user(app, f"{role}@acme.test", role=role)
    orgs.create_role(orgs.get("acme"), "people", frozenset({"members.manage", "audit.read"}))
    make_user(app, "pat@acme.test", role="people")
    for address in ("viewer@acme.test", "member@acme.test", "pat@acme.test"):
        browser = browsers.signed_in(address)
        nav = browser.get("/account").text
        if address == "pat@acme.test":
            assert 'href="/admin/clients"' not in browser.get("/admin").text
        else:
            assert '<a href="/admin">Admin</a>' not in nav
        for path in (
            "/admin/clients",
            f"/admin/clients/{client_id}",
            f"/admin/clients/{client_id}/delete",
        ):
            assert browser.get(path).status_code == 403, (address, path)
        for path, data in {
            "/admin/clients": WIKI,
            f"/admin/clients/{client_id}": WIKI | {"name": "Hijacked"},
            f"/admin/clients/{client_id}/secret": {},
            f"/admin/clients/{client_id}/delete": {},
        }.items():
            assert act(browser, path, data).status_code == 403, (address, path)
    saved = stored(client_id)
    assert saved is not None and saved.name == "Acme app"
    assert [e.event for e in events()] == ["oidc.client.create"]


def test_console_another_organisation_sees_nothing(app, browsers: Browsers, owner: User) -> None:
    acme_id = acme_client()
    make_user(app, "bea@beta.test", org_slug="beta", role="admin")
    bea = browsers.signed_in("bea@beta.test")
    listing = bea.get("/admin/clients").text
    assert "Acme app" not in listing and acme_id not in listing
    assert GATEWAY_CLIENT_ID not in listing
    unknown = "no-such-client"
    for target in (acme_id, GATEWAY_CLIENT_ID, unknown):
        path = f"/admin/clients/{target}"
        pages = [bea.get(path), bea.get(f"{path}/delete")]
        forms = [
            act(bea, path, WIKI | {"name": "Hijacked"}),
            act(bea, f"{path}/secret"),
            act(bea, f"{path}/delete"),
        ]
        for response in pages + forms:
            assert response.status_code == 404, (target, response.request.url)
            assert "Acme app" not in response.text and "Bascule gateway" not in response.text
    # The same answer for a real id elsewhere as for one that does not exist: nothing leaks.
    assert (
        f"No client &#39;{acme_id}&#39; in &#39;beta&#39;."
        in bea.get(f"/admin/clients/{acme_id}").text
    )
    assert (
        f"No client &#39;{unknown}&#39; in &#39;beta&#39;."
        in bea.get(f"/admin/clients/{unknown}").text
    )
    saved = stored(acme_id)
    assert saved is not None and saved.name == "Acme app"
    gateway = stored(GATEWAY_CLIENT_ID)
    assert gateway is not None and gateway.first_party
    assert [e.event for e in events()] == ["oidc.client.create"]
    # Their own work stays their own: acme's admin does not see beta's client either.
    beta_id, _ = register(bea, WIKI | {"name": "Beta board"})
    olivia = browsers.signed_in(OWNER)
    assert "Beta board" not in olivia.get("/admin/clients").text
    assert olivia.get(f"/admin/clients/{beta_id}").status_code == 404


def test_odd_client_ids_in_the_path_are_plain_404s(app, as_owner: httpx.Client) -> None:
    for odd in ("%00", "a%20b", "x" * 65, "%C3%A9t%C3%A9"):
        assert as_owner.get(f"/admin/clients/{odd}").status_code == 404, odd


# --- the API ---------------------------------------------------------------------------------


def test_api_create_list_get_edit_reset_delete(app, api: Api) -> None:
    created = api.post(
        "/clients",
        json={
            "name": "Board",
            "redirect_uris": ["https://board.example/cb"],
            "post_logout_redirect_uris": ["https://board.example/"],
            "backchannel_logout_uri": "https://board.example/bc",
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    client_id, secret = body["client_id"], body["client_secret"]
    assert body | {"client_id": "", "client_secret": ""} == {
        "client_id": "",
        "client_secret": "",
        "name": "Board",
        "type": "confidential",
        "auth_method": "client_secret_basic",
        "first_party": False,
        "redirect_uris": ["https://board.example/cb"],
        "post_logout_redirect_uris": ["https://board.example/"],
        "backchannel_logout_uri": "https://board.example/bc",
        "grant_types": ["authorization_code", "refresh_token"],
        "id_token_signed_response_alg": "RS256",
    }
    assert created.headers["cache-control"] == "no-store"
    saved = stored(client_id)
    assert saved is not None and clients.check_secret(saved, secret)
    assert saved.org_id == org_id("acme")

    listing = api.get("/clients")
    assert listing.status_code == 200
    assert [c["client_id"] for c in listing.json()["items"]] == [client_id]
    assert listing.json()["total"] == 1
    fetched = api.get(f"/clients/{client_id}")
    assert fetched.json() == {k: v for k, v in body.items() if k != "client_secret"}
    assert secret not in listing.text and secret not in fetched.text

    patched = api.patch(
        f"/clients/{client_id}",
        json={"redirect_uris": ["https://board.example/v2/cb"], "backchannel_logout_uri": None},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["redirect_uris"] == ["https://board.example/v2/cb"]
    assert patched.json()["backchannel_logout_uri"] is None
    assert patched.json()["name"] == "Board"
    assert "client_secret" not in patched.json()

    reset = api.post(f"/clients/{client_id}/secret")
    assert reset.status_code == 200
    assert reset.json()["client_id"] == client_id
    new_secret = reset.json()["client_secret"]
    saved = stored(client_id)
    assert saved is not None
    assert clients.check_secret(saved, new_secret) and not clients.check_secret(saved, secret)

    assert api.delete(f"/clients/{client_id}").status_code == 204
    assert stored(client_id) is None
    problem(api.get(f"/clients/{client_id}"), 404)
    problem(api.delete(f"/clients/{client_id}"), 404)

    recorded = events()
    assert [e.event for e in recorded] == [
        "oidc.client.create",
        "oidc.client.update",
        "oidc.client.secret_reset",
        "oidc.client.delete",
    ]
    assert {(e.org_id, e.target, e.actor_email) for e in recorded} == {
        (org_id("acme"), client_id, OWNER)
    }
    assert recorded[1].details == {
        "before": {
            "backchannel_logout_uri": "https://board.example/bc",
            "redirect_uris": ["https://board.example/cb"],
        },
        "after": {
            "backchannel_logout_uri": None,
            "redirect_uris": ["https://board.example/v2/cb"],
        },
    }
    # The organisation's own audit log shows them, through the API too.
    audit_log = api.get("/audit", params={"event": "oidc"}).json()
    assert {e["event"] for e in audit_log["items"]} >= {"oidc.client.create", "oidc.client.delete"}


def test_api_public_client_and_first_party_refused(app, api: Api) -> None:
    public = api.post(
        "/clients",
        json={"name": "SPA", "redirect_uris": ["http://localhost:5173/cb"], "public": True},
    )
    assert public.status_code == 201, public.text
    assert public.json()["client_secret"] is None
    assert public.json()["type"] == "public" and public.json()["auth_method"] == "none"
    detail = problem(api.post(f"/clients/{public.json()['client_id']}/secret"), 400)["detail"]
    assert detail == "This client does not authenticate with a secret."

    first_party = api.post(
        "/clients",
        json={"name": "Mine", "redirect_uris": ["https://mine.example/cb"], "first_party": True},
    )
    assert (
        "Only the operator can register a first-party client"
        in (problem(first_party, 400)["detail"])
    )
    assert db.session.scalar(select(OAuthClient).where(OAuthClient.name == "Mine")) is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"redirect_uris": ["https://x.example/cb#f"]}, "redirect_uri must not have a fragment"),
        ({"redirect_uris": ["ftp://x.example/cb"]}, "must be an absolute http(s) URL"),
        ({"redirect_uris": []}, "needs a redirect_uri"),
        ({"redirect_uris": "https://x.example/cb"}, "redirect_uris must be a list of strings"),
        ({"redirect_uris": ["https://x.example/\x00"]}, "must not contain control characters"),
        ({"redirect_uris": ["https://x.example/" + "a" * 2000]}, "must be 0 to 2000 characters"),
        ({"post_logout_redirect_uris": ["https://u:p@x.example/"]}, "must not carry credentials"),
        ({"backchannel_logout_uri": "https://[::1"}, "is not a valid URL"),
        ({"backchannel_logout_uri": 7}, "backchannel_logout_uri must be a string"),
        ({"name": ""}, "name must be 1 to 100 characters long"),
        ({"public": "yes"}, "public must be true or false"),
        ({"client_id": "mine"}, "Unknown field(s): 'client_id'"),
    ],
)
def test_api_refuses_bad_input(app, api: Api, body: dict[str, Any], message: str) -> None:
    full = {"name": "X", "redirect_uris": ["https://x.example/cb"]} | body
    detail = problem(api.post("/clients", json=full), 400)["detail"]
    assert message in detail
    assert events() == []
    made = acme_client()
    if set(body) - {"public", "client_id"}:
        patch = {k: v for k, v in body.items() if k != "client_id"}
        assert message in problem(api.patch(f"/clients/{made}", json=patch), 400)["detail"]
        saved = stored(made)
        assert saved is not None and saved.redirect_uris == ["https://app.acme.example/cb"]
    assert [e.event for e in events()] == ["oidc.client.create"]


def test_api_patch_needs_a_field(app, api: Api) -> None:
    made = acme_client()
    assert "Give at least one of" in problem(api.patch(f"/clients/{made}", json={}), 400)["detail"]
    assert (
        "Unknown field(s): 'public'"
        in (problem(api.patch(f"/clients/{made}", json={"public": True}), 400)["detail"])
    )


def test_api_another_organisation_gets_404(app, api: Api, base_url: str) -> None:
    acme_id = acme_client()
    bea = make_user(app, "bea@beta.test", org_slug="beta", role="owner")
    with httpx.Client(
        base_url=f"{base_url}/api/v1",
        headers={"Authorization": f"Bearer {token_for(app, bea, 'beta')}"},
        timeout=30,
    ) as beta:
        assert beta.get("/clients").json()["items"] == []
        for target in (acme_id, GATEWAY_CLIENT_ID, "no-such-client"):
            for response in (
                beta.get(f"/clients/{target}"),
                beta.patch(f"/clients/{target}", json={"name": "Hijacked"}),
                beta.post(f"/clients/{target}/secret"),
                beta.delete(f"/clients/{target}"),
            ):
                detail = problem(response, 404)["detail"]
                assert detail == f"No client {target!r} in 'beta'."
    assert [c["client_id"] for c in api.get("/clients").json()["items"]] == [acme_id]
    saved = stored(acme_id)
    assert saved is not None and saved.name == "Acme app"
    assert [e.event for e in events()] == ["oidc.client.create"]


def test_api_refuses_members_without_security_manage(app, api: Api, base_url: str) -> None:
    made = acme_client()
    for role in ("viewer", "member"):
        user = make_user(app, f"{role}@acme.test", role=role)
        with httpx.Client(
            base_url=f"{base_url}/api/v1",
            headers={"Authorization": f"Bearer {token_for(app, user)}"},
            timeout=30,
        ) as caller:
            for response in (
                caller.get("/clients"),
                caller.post("/clients", json={"name": "X", "redirect_uris": ["https://x.test/"]}),
                caller.get(f"/clients/{made}"),
                caller.patch(f"/clients/{made}", json={"name": "Hijacked"}),
                caller.post(f"/clients/{made}/secret"),
                caller.delete(f"/clients/{made}"),
            ):
                assert "security.manage" in problem(response, 403)["detail"]
    saved = stored(made)
    assert saved is not None and saved.name == "Acme app"
    assert [e.event for e in events()] == ["oidc.client.create"]
    assert len(events("api.denied")) == 12


def test_openapi_document_describes_the_client_routes(app, api: Api) -> None:
    spec = api.get("/openapi.json").json()
    assert set(spec["paths"]["/api/v1/clients"]) == {"get", "post"}
    assert set(spec["paths"]["/api/v1/clients/{client_id}"]) == {
        "parameters",
        "get",
        "patch",
        "delete",
    }
    assert set(spec["paths"]["/api/v1/clients/{client_id}/secret"]) == {"parameters", "post"}
    create = spec["components"]["schemas"]["ClientCreate"]
    assert "first_party" not in create["properties"] and create["additionalProperties"] is False


# --- the rules beneath both ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # a rule on text, not on SQL
@pytest.mark.parametrize(
    "uri",
    [
        "https://localhost/bc",
        "https://api.localhost/bc",
        "http://127.0.0.1:6379/",
        "https://127.1/bc",
        "https://2130706433/bc",
        "https://0x7f.0.0.1/bc",
        "https://10.1.2.3/bc",
        "https://192.168.0.10/bc",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/bc",
        "https://0.0.0.0/bc",
        "https://[::1]/bc",
        "https://[fd00::1]/bc",
        "https://[::ffff:10.0.0.1]/bc",
    ],
)
def test_backchannel_uri_may_not_aim_at_internal_addresses(app, owner: User, uri: str) -> None:
    """Outside development mode; the IdP itself would send the request (SSRF)."""
    ctx = _production_context()
    principal = authz.operator(orgs.get("acme"))
    new = client_admin.NewClient("X", ["https://x.example/cb"], backchannel_logout_uri=uri)
    with pytest.raises(ServiceError, match="must be a public address"):
        client_admin.create(principal, ctx, new)
    made = acme_client()
    with pytest.raises(ServiceError, match="must be a public address"):
        client_admin.update(principal, ctx, made, clients.Changes(backchannel_logout_uri=uri))
    db.session.rollback()
    assert [e.event for e in events()] == ["oidc.client.create"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_backchannel_uri_on_a_public_address_is_fine(app, owner: User) -> None:
    principal = authz.operator(orgs.get("acme"))
    for uri in ("https://app.example/bc", "https://93.184.216.34/bc", "https://[2606:4700::1]/"):
        new = client_admin.NewClient("X", ["https://x.example/cb"], backchannel_logout_uri=uri)
        created = client_admin.create(principal, _production_context(), new)
        assert created.client.backchannel_logout_uri == uri


def _production_context() -> Any:
    from tests.support import cli_context

    ctx = cli_context()
    return dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, dev=False))
