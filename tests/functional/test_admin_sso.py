"""SAML connections managed by an organisation's admins: console and API, over real HTTP.

A connection is added from pasted, uploaded and API-given metadata, edited, refreshed with a
new signing certificate, and deleted, each checked in the database and the audit log. Refused
changes (a bad or already claimed domain, a role the admin could not grant, enforcement with no
domain) are explained and change nothing. A member without ``security.manage`` is refused
everywhere, before any metadata is read or fetched; another organisation's admin finds nothing.
"Test connection" goes to the IdP and shows what its answer would do, signing nobody in.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from html import unescape
from typing import Any

import httpx
import pytest
from flask import Flask
from sqlalchemy import func, select

from idp.extensions import db
from idp.models import AuditEvent, SamlConnection, SamlIdentity, User
from idp.runtime import runtime
from idp.services import authz, orgs, users
from idp.services.saml import connections, metadata
from idp.services.saml.connections import Changes
from tests.saml.support import IDP_SSO_URL, FakeIdp, SamlBrowser, read_redirect
from tests.support import Api, Browsers, cli_context, csrf_token, make_user, sid_of, token_for

OWNER = "olivia@acme.test"
ADMIN = "adam@acme.test"
PROBLEM = "application/problem+json"
ALERT = re.compile(r'<div class="alert" role="alert">\s*<p>(.*?)</p>', re.S)
NOTICE = re.compile(r'<div class="notice" role="status"><p>(.*?)</p>', re.S)
SETTINGS = {
    "domains": "corp.example",
    "attr_email": "email",
    "attr_given_name": "givenName",
    "attr_family_name": "sn",
    "attr_groups": "groups",
    "group_roles": "admins = admin",
    "default_role": "member",
    "preset": "",
    "metadata_url": "",
    "owner_break_glass": "on",
}


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def idp() -> FakeIdp:
    return FakeIdp()


@pytest.fixture
def as_owner(browsers: Browsers, owner: User) -> httpx.Client:
    return browsers.signed_in(OWNER)


@pytest.fixture
def admin(app: Flask, owner: User) -> User:
    return make_user(app, ADMIN, role="admin", name="Adam Admin")


@pytest.fixture
def api(app: Flask, owner: User, base_url: str) -> Iterator[Api]:
    client = Api(base_url, token_for(app, owner))
    yield client
    client.client.close()


def act(
    client: httpx.Client, path: str, data: dict[str, str] | None = None, **kwargs: Any
) -> httpx.Response:
    """Submit a form with the session's CSRF token (any page of ours carries it)."""
    token = csrf_token(client.get("/account").text)
    return client.post(path, data={"csrf_token": token, **(data or {})}, **kwargs)


def add(client: httpx.Client, idp: FakeIdp, slug: str = "corp", **form: str) -> httpx.Response:
    data = {
        "slug": slug,
        "metadata_xml": idp.metadata(),
        "domains": "corp.example",
        "preset": "generic",
        "owner_break_glass": "on",
    }
    response = act(client, "/admin/sso", data | form)
    if response.status_code == 303:
        client.get(response.headers["location"])  # where its notice is shown
    return response


def connect(slug: str, idp: FakeIdp, org: str = "acme", **changes: Any) -> None:
    """A connection made by the operator (``bascule saml add``), committed."""
    connections.create(
        authz.operator(orgs.get(org)),
        cli_context(),
        runtime().keyring,
        slug,
        connections.load_metadata(authz.operator(orgs.get(org)), idp.metadata(), None),
        Changes(**changes),
    )
    db.session.commit()


def stored(slug: str) -> SamlConnection | None:
    """The connection as the server committed it (our own transaction ends before and after)."""
    db.session.rollback()
    db.session.expire_all()
    found = connections.find(slug)
    if found is not None:
        db.session.expunge(found)
    db.session.rollback()
    return found


def events(prefix: str = "saml.") -> list[AuditEvent]:
    db.session.rollback()
    query = select(AuditEvent).where(AuditEvent.event.startswith(prefix)).order_by(AuditEvent.seq)
    found = list(db.session.scalars(query))
    db.session.rollback()
    return found


def alert(page: str) -> str:
    match = ALERT.search(page)
    assert match, "no alert on the page"
    return unescape(match.group(1))


def notice(page: str) -> str:
    match = NOTICE.search(page)
    assert match, "no notice on the page"
    return unescape(match.group(1))


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    return response.json()  # type: ignore[no-any-return]


class Listener:
    """A port that records whether anyone connected: the metadata URL of a refused request."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.setblocking(False)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/metadata.xml"

    def was_called(self) -> bool:
        try:
            self.sock.accept()[0].close()
        except BlockingIOError:
            return False
        return True


@pytest.fixture
def listener() -> Iterator[Listener]:
    made = Listener()
    yield made
    made.sock.close()


# --- the console -----------------------------------------------------------------------------


def test_console_adds_a_connection_from_pasted_metadata(
    app: Flask, as_owner: httpx.Client, idp: FakeIdp, base_url: str
) -> None:
    assert 'href="/admin/sso"' in as_owner.get("/admin").text  # in the navigation
    listing = as_owner.get("/admin/sso")
    assert listing.status_code == 200
    assert "<h1>Single sign-on</h1>" in listing.text
    assert 'href="/admin/sso" aria-current="page"' in listing.text

    form = {"slug": "corp", "metadata_xml": idp.metadata(), "domains": "corp.example"}
    response = act(as_owner, "/admin/sso", form | {"preset": "okta", "owner_break_glass": "on"})
    assert response.status_code == 303, response.text[:500]
    assert response.headers["location"] == "/admin/sso/corp"
    page = as_owner.get("/admin/sso/corp").text
    assert notice(page).startswith("The connection corp was added.")
    base = f"{base_url}/saml/corp"
    assert f'<code id="sp-metadata-url">{base}/metadata</code>' in page
    assert f'<code id="sp-entity-id">{base}/metadata</code>' in page
    assert f'<code id="acs-url">{base}/acs</code>' in page
    assert f'<code id="sls-url">{base}/sls</code>' in page
    assert 'href="/saml/corp/metadata" download' in page
    assert 'href="/admin/sso/corp/test"' in page
    metadata = as_owner.get("/saml/corp/metadata")
    assert metadata.status_code == 200 and f'entityID="{base}/metadata"' in metadata.text

    saved = stored("corp")
    assert saved is not None and saved.org_id == orgs.get("acme").id
    assert saved.idp_entity_id == idp.entity_id
    assert saved.domains == ["corp.example"]
    assert saved.attribute_map == connections.PRESETS["okta"]
    assert (saved.enforce_sso, saved.owner_break_glass, saved.allow_idp_initiated) == (
        False,
        True,
        False,
    )
    [created] = events()
    assert (created.event, created.target, created.actor_email) == (
        "saml.connection_create",
        "corp",
        OWNER,
    )
    assert created.org_id == orgs.get("acme").id
    assert "corp" in as_owner.get("/admin/sso").text


def test_console_adds_from_an_uploaded_file(as_owner: httpx.Client, idp: FakeIdp) -> None:
    token = csrf_token(as_owner.get("/admin/sso").text)
    form = {"csrf_token": token, "slug": "upload", "metadata_xml": "", "domains": "up.example"}
    files = {"metadata_file": ("idp.xml", idp.metadata().encode(), "application/xml")}
    response = as_owner.post("/admin/sso", data=form, files=files)
    assert response.status_code == 303, response.text[:500]
    saved = stored("upload")
    assert saved is not None and saved.domains == ["up.example"]
    # Both pasted and uploaded: which one was meant is not guessed.
    files = {"metadata_file": ("idp.xml", idp.metadata().encode(), "application/xml")}
    both = form | {"slug": "both", "metadata_xml": idp.metadata(), "domains": ""}
    response = as_owner.post("/admin/sso", data=both, files=files)
    assert response.status_code == 400
    assert alert(response.text) == "Give the metadata once: paste it or upload a file, not both."


def test_console_edits_the_settings(as_owner: httpx.Client, idp: FakeIdp) -> None:
    assert add(as_owner, idp).status_code == 303
    form = SETTINGS | {
        "domains": "corp.example\r\n\r\n  Corp-Two.example  ",
        "attr_email": "mail",
        "attr_given_name": "",
        "group_roles": "CN=Admins,OU=Groups,DC=corp = admin\nstaff = member",
        "default_role": "viewer",
        "enforce_sso": "on",
        "allow_idp_initiated": "on",
        "metadata_url": "https://idp.corp.example/metadata",
    }
    response = act(as_owner, "/admin/sso/corp", form)
    assert response.status_code == 303 and response.headers["location"] == "/admin/sso/corp"
    page = as_owner.get("/admin/sso/corp").text
    assert notice(page) == "The settings of corp were saved."
    assert "CN=Admins,OU=Groups,DC=corp = admin" in page  # shown as it is kept

    saved = stored("corp")
    assert saved is not None
    assert saved.domains == ["corp-two.example", "corp.example"]
    assert saved.attribute_map == {"email": "mail", "family_name": "sn", "groups": "groups"}
    assert saved.group_roles == {"CN=Admins,OU=Groups,DC=corp": "admin", "staff": "member"}
    assert saved.default_role == "viewer"
    assert (saved.enforce_sso, saved.owner_break_glass, saved.allow_idp_initiated) == (
        True,
        True,
        True,
    )
    assert saved.metadata_url == "https://idp.corp.example/metadata"
    [updated] = events("saml.connection_update")
    assert updated.actor_email == OWNER and updated.target == "corp"
    assert updated.details["changed"]["enforce_sso"] == {"before": False, "after": True}
    assert updated.details["changed"]["default_role"] == {"before": "member", "after": "viewer"}

    # A preset replaces the attribute fields; unticked switches are off.
    act(as_owner, "/admin/sso/corp", SETTINGS | {"preset": "entra", "owner_break_glass": ""})
    saved = stored("corp")
    assert saved is not None and saved.attribute_map == connections.PRESETS["entra"]
    assert (saved.enforce_sso, saved.owner_break_glass) == (False, False)


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"domains": "not a domain"}, 400, "'not a domain' is not a domain name."),
        (
            {"domains": "globex.example"},
            400,
            "Globex.example already belongs to another SSO connection.",
        ),
        ({"domains": "", "enforce_sso": "on"}, 400, "Enforcing SSO needs at least one domain."),
        (
            {"group_roles": "admins"},
            400,
            "Write each group mapping as “group = role”, not 'admins'.",
        ),
        ({"group_roles": "admins = wizard"}, 400, "Organisation 'acme' has no role 'wizard'."),
        ({"preset": "ping"}, 400, "There is no attribute preset 'ping'."),
        ({"metadata_url": "file:///etc/passwd"}, 400, "must be an http(s) URL"),
    ],
)
def test_console_refuses_bad_settings_with_a_message(
    app: Flask,
    as_owner: httpx.Client,
    idp: FakeIdp,
    form: dict[str, str],
    status: int,
    message: str,
) -> None:
    orgs.create("globex", "Globex")
    db.session.commit()
    connect("globex", idp, org="globex", domains=["globex.example"])
    assert add(as_owner, idp).status_code == 303
    response = act(as_owner, "/admin/sso/corp", SETTINGS | form)
    assert response.status_code == status
    assert message in alert(response.text)
    for name in ("domains", "group_roles", "metadata_url"):
        if form.get(name):
            assert form[name] in unescape(response.text)  # the form keeps what was typed
    saved = stored("corp")
    assert saved is not None and saved.domains == ["corp.example"] and saved.group_roles == {}
    assert events("saml.connection_update") == []


def test_admin_cannot_map_a_group_to_a_role_above_their_own(
    browsers: Browsers, admin: User, idp: FakeIdp
) -> None:
    """An admin lacks billing.manage, so mapping a group to owner would hand out more than
    they hold: refused (403) with the reason, on the console as in the API."""
    as_admin = browsers.signed_in(ADMIN)
    assert add(as_admin, idp).status_code == 303
    response = act(as_admin, "/admin/sso/corp", SETTINGS | {"group_roles": "admins = owner"})
    assert response.status_code == 403
    assert alert(response.text) == "You cannot grant permissions you do not hold: billing.manage."
    response = act(as_admin, "/admin/sso/corp", SETTINGS | {"default_role": "owner"})
    assert response.status_code == 403
    saved = stored("corp")
    assert saved is not None and saved.group_roles == {} and saved.default_role == "member"
    # The same mapping to admin is theirs to give.
    response = act(as_admin, "/admin/sso/corp", SETTINGS | {"group_roles": "admins = admin"})
    assert response.status_code == 303


def test_console_refreshes_the_metadata(as_owner: httpx.Client, idp: FakeIdp) -> None:
    assert add(as_owner, idp).status_code == 303
    # Without a URL there is nothing to fetch: the page says so.
    response = act(as_owner, "/admin/sso/corp/refresh", {"metadata_xml": ""})
    assert response.status_code == 400
    assert alert(response.text) == "'corp' has no metadata URL to refresh from."
    response = act(as_owner, "/admin/sso/corp/refresh", {"metadata_xml": "<nope"})
    assert response.status_code == 400
    assert "not valid SAML metadata" in alert(response.text)

    rolled = FakeIdp()  # the IdP's new signing key
    response = act(as_owner, "/admin/sso/corp/refresh", {"metadata_xml": rolled.metadata()})
    assert response.status_code == 303 and response.headers["location"] == "/admin/sso/corp"
    assert "1 signing certificate" in notice(as_owner.get("/admin/sso/corp").text)
    saved = stored("corp")
    assert saved is not None and saved.idp_certificates != stored_certificates(idp)
    [refreshed] = events("saml.metadata_refresh")
    assert refreshed.actor_email == OWNER and refreshed.details["certificates_changed"] is True


def stored_certificates(idp: FakeIdp) -> list[str]:
    return metadata.parse(idp.metadata()).certificates


def test_console_deletes_after_a_confirmation(as_owner: httpx.Client, idp: FakeIdp) -> None:
    assert add(as_owner, idp).status_code == 303
    confirm = as_owner.get("/admin/sso/corp/delete")
    assert confirm.status_code == 200
    assert "<h1>Delete the connection corp?</h1>" in confirm.text
    assert stored("corp") is not None
    response = act(as_owner, "/admin/sso/corp/delete")
    assert response.status_code == 303 and response.headers["location"] == "/admin/sso"
    assert notice(as_owner.get("/admin/sso").text).startswith("The connection corp was deleted.")
    assert stored("corp") is None
    assert as_owner.get("/admin/sso/corp").status_code == 404
    [deleted] = events("saml.connection_delete")
    assert (deleted.target, deleted.actor_email) == ("corp", OWNER)


def test_console_forms_need_the_csrf_token(as_owner: httpx.Client, idp: FakeIdp) -> None:
    assert add(as_owner, idp).status_code == 303
    for path in ("/admin/sso", "/admin/sso/corp", "/admin/sso/corp/refresh"):
        assert as_owner.post(path, data=SETTINGS).status_code == 400
    assert as_owner.post("/admin/sso/corp/delete").status_code == 400
    assert stored("corp") is not None


# --- the API ---------------------------------------------------------------------------------


def test_api_creates_reads_changes_refreshes_and_deletes(
    app: Flask, api: Api, idp: FakeIdp, base_url: str
) -> None:
    body = {
        "slug": "corp",
        "metadata_xml": idp.metadata(),
        "domains": ["Corp.example"],
        "preset": "okta",
        "attribute_map": {"groups": "memberOf"},
        "group_roles": {"admins": "admin"},
        "enforce_sso": True,
    }
    created = api.post("/saml/connections", json=body)
    assert created.status_code == 201, created.text
    shown = created.json()
    assert shown["slug"] == "corp" and shown["org"] == "acme"
    assert shown["domains"] == ["corp.example"]
    assert shown["attribute_map"] == connections.PRESETS["okta"] | {"groups": "memberOf"}
    assert shown["enforce_sso"] is True and shown["owner_break_glass"] is True
    assert shown["acs_url"] == f"{base_url}/saml/corp/acs"
    assert shown["sp_entity_id"] == shown["sp_metadata_url"] == f"{base_url}/saml/corp/metadata"
    assert shown["idp_certificates"] == 1 and shown["metadata_url"] is None
    assert created.headers["cache-control"] == "no-store"

    listing = api.get("/saml/connections").json()
    assert (listing["total"], [c["slug"] for c in listing["items"]]) == (1, ["corp"])
    assert api.get("/saml/connections/corp").json() == shown

    changed = api.patch(
        "/saml/connections/corp",
        json={"default_role": "viewer", "metadata_url": "https://idp.corp.example/md"},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["default_role"] == "viewer"
    assert changed.json()["metadata_url"] == "https://idp.corp.example/md"
    assert changed.json()["group_roles"] == {"admins": "admin"}  # not given: unchanged
    cleared = api.patch("/saml/connections/corp", json={"metadata_url": None})
    assert cleared.json()["metadata_url"] is None

    rolled = FakeIdp()
    refreshed = api.post("/saml/connections/corp/refresh", json={"metadata_xml": rolled.metadata()})
    assert refreshed.status_code == 200, refreshed.text
    saved = stored("corp")
    assert saved is not None and saved.idp_certificates == stored_certificates(rolled)
    no_url = api.post("/saml/connections/corp/refresh")
    assert problem(no_url, 400)["detail"] == "'corp' has no metadata URL to refresh from"

    assert api.delete("/saml/connections/corp").status_code == 204
    assert stored("corp") is None
    problem(api.get("/saml/connections/corp"), 404)
    assert [e.event for e in events()] == [
        "saml.connection_create",
        "saml.connection_update",
        "saml.connection_update",
        "saml.metadata_refresh",
        "saml.connection_delete",
    ]
    assert {e.actor_email for e in events()} == {OWNER}


IDP = "(the forged IdP's metadata)"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"slug": "x"}, "give the IdP's metadata: a file, pasted XML or a URL"),
        ({"slug": 5, "metadata_xml": IDP}, "slug must be a string."),
        ({"slug": "Bad Slug", "metadata_xml": IDP}, "'Bad Slug' is not a valid slug"),
        ({"slug": "x", "metadata_xml": "<x"}, "the metadata is not valid SAML metadata"),
        ({"slug": "x", "metadata_xml": "\u0000"}, "must not contain control characters"),
        ({"slug": "x", "metadata_xml": "x" * (256 * 1024 + 1)}, "metadata_xml must be 1 to"),
        # Over 1 MiB as UTF-8: the metadata endpoints take more than the API's usual body.
        ({"slug": "x", "metadata_xml": "\U0001f600" * (256 * 1024 + 1)}, "must be 1 to"),
        ({"slug": "x", "metadata_xml": 7}, "metadata_xml must be a string."),
        ({"slug": "x", "domains": "corp.example"}, "domains must be a list of strings."),
        ({"slug": "x", "domains": [""]}, "each entry of domains must be 1 to 253"),
        ({"slug": "x", "domains": ["not a domain"]}, "'not a domain' is not a domain name"),
        ({"slug": "x", "domains": ["globex.example"]}, "already belongs to another SSO"),
        ({"slug": "x", "domains": [], "enforce_sso": True}, "needs at least one domain"),
        ({"slug": "x", "enforce_sso": "yes"}, "enforce_sso must be true or false."),
        ({"slug": "x", "preset": "ping"}, "preset must be one of"),
        ({"slug": "x", "attribute_map": {"mail": "x"}}, "unknown key(s) 'mail'"),
        ({"slug": "x", "attribute_map": {}}, "attribute_map must have 1 to 4 entries."),
        ({"slug": "x", "attribute_map": {"email": 1}}, "attribute_map.email must be a string."),
        ({"slug": "x", "group_roles": ["admins"]}, "group_roles must be a JSON object."),
        ({"slug": "x", "group_roles": {"admins": "wizard"}}, "has no role 'wizard'"),
        ({"slug": "x", "default_role": ""}, "default_role must be 1 to 63 characters long."),
        ({"slug": "x", "metadata_url": "file:///etc/passwd"}, "must be an http(s) URL"),
        ({"slug": "x", "colour": "red"}, "Unknown field(s): 'colour'."),
    ],
)
def test_api_refuses_bad_input(
    app: Flask, api: Api, idp: FakeIdp, body: dict[str, Any], detail: str
) -> None:
    orgs.create("globex", "Globex")
    db.session.commit()
    connect("globex", idp, org="globex", domains=["globex.example"])
    if len(body) > 1 and "metadata_xml" not in body:
        body = body | {"metadata_xml": IDP}  # so that the field itself is what is refused
    if body.get("metadata_xml") == IDP:
        body = body | {"metadata_xml": idp.metadata()}
    assert detail in problem(api.post("/saml/connections", json=body), 400)["detail"]
    assert stored("x") is None and stored("Bad Slug") is None
    assert [e.event for e in events()] == ["saml.connection_create"]  # globex's, by the operator


def test_api_refuses_a_role_the_admin_could_not_grant(
    app: Flask, admin: User, base_url: str, idp: FakeIdp
) -> None:
    connect("corp", idp, domains=["corp.example"])
    with Api(base_url, token_for(app, admin)).client as as_admin:
        response = as_admin.patch("/saml/connections/corp", json={"group_roles": {"a": "owner"}})
        assert problem(response, 403)["detail"] == (
            "You cannot grant permissions you do not hold: billing.manage."
        )
        body = {"group_roles": {"a": "admin"}, "enforce_sso": True}
        assert as_admin.patch("/saml/connections/corp", json=body).status_code == 200
        refused = as_admin.patch("/saml/connections/corp", json={"domains": []})
        assert "needs at least one domain" in problem(refused, 400)["detail"]
    saved = stored("corp")
    assert saved is not None and saved.group_roles == {"a": "admin"}
    assert saved.domains == ["corp.example"]
    [denied] = events("api.denied")
    assert denied.actor_email == ADMIN and "billing.manage" in denied.details["reason"]


# --- who may --------------------------------------------------------------------------------


def test_a_member_without_security_manage_is_refused_everywhere(
    app: Flask,
    owner: User,
    browsers: Browsers,
    base_url: str,
    idp: FakeIdp,
    listener: Listener,
) -> None:
    """Before anything is read: the URL of a refused request is never fetched."""
    support = orgs.create_role(orgs.get("acme"), "support", frozenset({"members.manage"}))
    db.session.commit()
    jane = make_user(app, "jane@acme.test", role=support.name)
    connect("corp", idp, domains=["corp.example"])
    as_jane = browsers.signed_in("jane@acme.test")
    assert 'href="/admin/sso"' not in as_jane.get("/admin").text
    for path in ("/admin/sso", "/admin/sso/corp", "/admin/sso/corp/test", "/admin/sso/corp/delete"):
        assert as_jane.get(path).status_code == 403, path
    for path, form in [
        ("/admin/sso", {"slug": "mine", "metadata_url": listener.url}),
        ("/admin/sso/corp", SETTINGS),
        ("/admin/sso/corp/refresh", {"metadata_xml": idp.metadata()}),
        ("/admin/sso/corp/delete", {}),
    ]:
        assert act(as_jane, path, form).status_code == 403, path

    with Api(base_url, token_for(app, jane)).client as api:
        for method, path, body in [
            ("GET", "/saml/connections", None),
            ("POST", "/saml/connections", {"slug": "mine", "metadata_url": listener.url}),
            ("GET", "/saml/connections/corp", None),
            ("PATCH", "/saml/connections/corp", {"enforce_sso": True}),
            ("POST", "/saml/connections/corp/refresh", {"metadata_xml": idp.metadata()}),
            ("DELETE", "/saml/connections/corp", None),
        ]:
            problem(api.request(method, path, json=body), 403)
    assert not listener.was_called()
    assert stored("mine") is None
    saved = stored("corp")
    assert saved is not None and saved.enforce_sso is False
    assert [e.event for e in events()] == ["saml.connection_create"]  # the operator's


def test_another_organisations_connection_is_not_found(
    app: Flask, as_owner: httpx.Client, api: Api, idp: FakeIdp
) -> None:
    orgs.create("globex", "Globex")
    db.session.commit()
    connect("globex", idp, org="globex", domains=["globex.example"])
    assert "globex" not in as_owner.get("/admin/sso").text
    for path in ("/admin/sso/globex", "/admin/sso/globex/test", "/admin/sso/globex/delete"):
        assert as_owner.get(path).status_code == 404, path
    assert act(as_owner, "/admin/sso/globex/delete").status_code == 404
    problem(api.get("/saml/connections/globex"), 404)
    problem(api.delete("/saml/connections/globex"), 404)
    assert api.get("/saml/connections").json()["total"] == 0
    assert stored("globex") is not None


# --- test connection -------------------------------------------------------------------------


def test_test_connection_shows_the_answer_and_signs_nobody_in(
    app: Flask, as_owner: httpx.Client, idp: FakeIdp, base_url: str
) -> None:
    connect("corp", idp, domains=["corp.example"], group_roles={"admins": "admin"})
    session_before = as_owner.cookies.get("bascule_session")
    sid_before = sid_of(as_owner)

    started = as_owner.get("/admin/sso/corp/test")
    assert started.status_code == 303
    assert started.headers["location"].startswith(IDP_SSO_URL)
    request = read_redirect(started.headers["location"])
    assert request.relay_state and "/" not in request.relay_state  # a reference, not a URL

    browser = SamlBrowser(as_owner, base_url, "corp")
    claims = browser.claims(request, attributes={
        "email": ["alice@corp.example"], "givenName": ["Alice"], "sn": ["Liddell"],
        "groups": ["staff", "admins"],
    })  # fmt: skip
    result = browser.post(browser.signed(idp, claims), request.relay_state)
    assert result.status_code == 200, result.text[:500]
    assert "<h1>Connection test: corp</h1>" in result.text
    assert '<dd id="test-email">alice@corp.example</dd>' in result.text
    assert '<dd id="test-role">admin</dd>' in result.text
    assert "would be created" in result.text

    # Nobody was signed in or created; the admin is still the admin, in the same session.
    assert users.find_by_email("alice@corp.example") is None
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(SamlIdentity)) == 0
    assert as_owner.cookies.get("bascule_session") == session_before
    assert sid_of(as_owner) == sid_before
    assert as_owner.get("/admin/sso").status_code == 200
    assert OWNER in as_owner.get("/account").text
    assert [e.event for e in events()] == ["saml.connection_create"]  # no saml.login


def test_test_connection_answer_is_used_once(
    app: Flask, as_owner: httpx.Client, idp: FakeIdp, base_url: str
) -> None:
    """The test's answer passes the checks a sign-in's does: posting it again is refused."""
    connect("corp", idp, domains=["corp.example"])
    request = read_redirect(as_owner.get("/admin/sso/corp/test").headers["location"])
    browser = SamlBrowser(as_owner, base_url, "corp")
    response = browser.signed(idp, browser.claims(request))
    assert browser.post(response, request.relay_state).status_code == 200
    assert browser.post(response, request.relay_state).status_code == 400
    assert len(events("saml.rejected")) == 1


def test_an_admin_cannot_make_the_server_fetch_from_its_own_network(
    api: Api, listener: Listener
) -> None:
    """Server-side request forgery: loopback, private and link-local metadata URLs are refused
    before any connection is made (only the operator's CLI may use them)."""
    for url in (
        listener.url,
        "http://localhost:9/metadata",
        "http://10.0.0.1/metadata",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/metadata",
        "http://2130706433/metadata",  # 127.0.0.1 as one number
    ):
        answer = problem(
            api.client.post("/saml/connections", json={"slug": "mine", "metadata_url": url}), 400
        )
        assert "public address" in answer["detail"], (url, answer)
    assert not listener.was_called()
    assert stored("mine") is None
