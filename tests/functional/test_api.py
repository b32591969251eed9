"""The JSON admin API through the real HTTP stack: every operation, and the attacks on it.

Each operation is performed with an owner's token; then the same operations with a plain
member's token are refused; then the escalation attempts (granting what one lacks, another
organisation's member by id, the last owner, revoked tokens, a left organisation, a session
cookie instead of a token) are each made and refused, and refusals are found in the audit log.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask
from sqlalchemy import select

from idp.extensions import db
from idp.models import ApiToken, AuditEvent, Membership, User
from idp.runtime import runtime
from idp.services import api_tokens, authz, orgs
from idp.services.authz import Forbidden
from tests.support import STRONG_PASSWORD, Api, cli_context, make_user, sign_in, token_for

PROBLEM = "application/problem+json"


@pytest.fixture
def as_owner(app: Flask, owner: User, base_url: str) -> Iterator[Api]:
    api = Api(base_url, token_for(app, owner))
    yield api
    api.client.close()


def member_id(user: User, org_slug: str = "acme") -> int:
    member = orgs.membership(user, orgs.get(org_slug))
    assert member is not None
    return member.id


def fresh(model: Any, key: Any) -> Any:
    """Re-read a row the server (another thread and session) may have changed."""
    db.session.expire_all()
    return db.session.get(model, key)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert "Traceback" not in response.text
    return body  # type: ignore[no-any-return]


def denials() -> list[AuditEvent]:
    db.session.expire_all()
    query = select(AuditEvent).where(AuditEvent.event == "api.denied").order_by(AuditEvent.seq)
    return list(db.session.scalars(query))


# --- the document and the caller ------------------------------------------------------------


def test_openapi_document_is_public(app, base_url: str) -> None:
    response = httpx.get(f"{base_url}/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["openapi"] == "3.1.0"
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "/api/v1/members/{member_id}" in spec["paths"]
    assert spec["servers"] == [{"url": base_url}]


def test_me_names_user_org_and_permissions(as_owner: Api, owner: User) -> None:
    response = as_owner.get("/me")
    assert response.status_code == 200
    body = response.json()
    assert body["user"]["email"] == "olivia@acme.test"
    assert body["org"]["slug"] == "acme"
    assert body["role"] == "owner"
    assert "billing.manage" in body["permissions"]
    assert response.headers["cache-control"] == "no-store"
    assert "set-cookie" not in response.headers


# --- each operation with an owner's token ---------------------------------------------------


def test_members_invite_list_get_and_resend(app, as_owner: Api) -> None:
    response = as_owner.post("/members", json={"email": "New@Acme.test", "role": "member"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["member"]["email"] == "new@acme.test"
    assert body["member"]["has_password"] is False
    assert body["invitation_link"].startswith(f"{runtime().settings.issuer}/invite/")
    new_id = body["member"]["id"]

    listing = as_owner.get("/members", params={"per_page": 1, "page": 2}).json()
    assert (listing["total"], listing["page"], listing["per_page"]) == (2, 2, 1)
    assert [m["email"] for m in listing["items"]] == ["olivia@acme.test"]

    assert as_owner.get(f"/members/{new_id}").json()["role"] == "member"
    again = as_owner.post(f"/members/{new_id}/invitation")
    assert again.status_code == 200
    assert again.json()["invitation_link"] != body["invitation_link"]

    duplicate = as_owner.post("/members", json={"email": "new@acme.test"})
    assert "already a member" in problem(duplicate, 400)["detail"]
    unknown_role = as_owner.post("/members", json={"email": "x@acme.test", "role": "wizard"})
    assert "no role 'wizard'" in problem(unknown_role, 400)["detail"]


def test_member_role_disable_enable_revoke_and_remove(
    app, as_owner: Api, base_url: str, browser_client: httpx.Client
) -> None:
    jane = make_user(app)
    mid = member_id(jane)
    sign_in(browser_client, "jane@acme.test", STRONG_PASSWORD)
    assert browser_client.get("/account").status_code == 200

    changed = as_owner.patch(f"/members/{mid}", json={"role": "admin"})
    assert changed.status_code == 200
    assert changed.json()["role"] == "admin"

    ended = as_owner.post(f"/members/{mid}/sessions/revoke")
    assert ended.json() == {"sessions_revoked": 1}
    assert browser_client.get("/account").status_code == 302  # signed out at once

    disabled = as_owner.patch(f"/members/{mid}", json={"active": False})
    assert disabled.json()["active"] is False
    assert fresh(User, jane.id).is_active is False
    enabled = as_owner.patch(f"/members/{mid}", json={"active": True, "role": "viewer"})
    assert (enabled.json()["active"], enabled.json()["role"]) == (True, "viewer")

    assert as_owner.delete(f"/members/{mid}").status_code == 204
    problem(as_owner.get(f"/members/{mid}"), 404)
    events = [e.event for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.seq))]
    for event in ("member.role_change", "session.revoke_all", "user.disable", "member.remove"):
        assert event in events


def test_roles_create_edit_delete(app, as_owner: Api) -> None:
    created = as_owner.post("/roles", json={"name": "support", "permissions": ["audit.read"]})
    assert created.status_code == 201, created.text
    role = created.json()
    assert role | {"id": 0} == {
        "id": 0, "name": "support", "builtin": False, "permissions": ["audit.read"], "members": 0,
    }  # fmt: skip
    rid = role["id"]
    edited = as_owner.patch(f"/roles/{rid}", json={"permissions": ["members.manage"]})
    assert edited.json()["permissions"] == ["members.manage"]
    assert as_owner.get(f"/roles/{rid}").json()["permissions"] == ["members.manage"]
    names = [r["name"] for r in as_owner.get("/roles").json()["items"]]
    assert names[:4] == ["admin", "member", "owner", "viewer"] and "support" in names

    jane = make_user(app, role="support")
    in_use = as_owner.delete(f"/roles/{rid}")
    assert "still held" in problem(in_use, 400)["detail"]
    as_owner.patch(f"/members/{member_id(jane)}", json={"role": "member"})
    assert as_owner.delete(f"/roles/{rid}").status_code == 204
    problem(as_owner.get(f"/roles/{rid}"), 404)

    builtin = orgs.get_role(orgs.get("acme"), "member").id
    problem(as_owner.patch(f"/roles/{builtin}", json={"permissions": []}), 400)
    problem(as_owner.delete(f"/roles/{builtin}"), 400)
    problem(as_owner.post("/roles", json={"name": "x", "permissions": ["root"]}), 400)
    problem(as_owner.post("/roles", json={"name": "Not A Slug"}), 400)


def test_security_settings(app, as_owner: Api) -> None:
    before = as_owner.get("/settings").json()
    assert set(before) == {
        "session_idle_minutes", "session_max_hours", "password_min_length", "redirect_origins",
        "mfa_policy", "mfa_grace_days", "mfa_grace_until",
    }  # fmt: skip
    after = as_owner.patch(
        "/settings",
        json={"session_idle_minutes": 10, "redirect_origins": ["https://App.example"]},
    )
    assert after.status_code == 200, after.text
    assert after.json()["session_idle_minutes"] == 10
    assert after.json()["redirect_origins"] == ["https://app.example"]
    assert as_owner.get("/settings").json() == after.json()

    problem(as_owner.patch("/settings", json={"session_idle_minutes": 1}), 400)
    problem(as_owner.patch("/settings", json={"session_idle_minutes": "10"}), 400)
    problem(as_owner.patch("/settings", json={"redirect_origins": ["http://a.example"]}), 400)
    problem(as_owner.patch("/settings", json={"redirect_origins": ["https://[x"]}), 400)
    problem(as_owner.patch("/settings", json={"redirect_origins": ["https://a:99999"]}), 400)


def test_audit_log_filters_and_pages(app, as_owner: Api) -> None:
    as_owner.post("/members", json={"email": "a@acme.test"})
    as_owner.post("/members", json={"email": "b@acme.test"})
    as_owner.post("/roles", json={"name": "support"})

    invites = as_owner.get("/audit", params={"event": "member.invite", "per_page": 2}).json()
    assert invites["total"] >= 2 and len(invites["items"]) == 2
    assert all(e["event"] == "member.invite" for e in invites["items"])
    assert invites["items"][0]["seq"] > invites["items"][1]["seq"]  # newest first

    by_text = as_owner.get("/audit", params={"q": "support"}).json()
    assert [e["event"] for e in by_text["items"]] == ["role.create"]
    by_actor = as_owner.get("/audit", params={"actor": "olivia@acme.test"}).json()
    assert by_actor["total"] >= 3
    assert as_owner.get("/audit", params={"actor": "nobody@else.test"}).json()["total"] == 0

    window = {"since": "2000-01-01T00:00:00Z", "until": "2000-01-02T00:00:00+02:00"}
    assert as_owner.get("/audit", params=window).json()["total"] == 0
    recent = as_owner.get("/audit", params={"since": "2000-01-01T00:00:00Z"}).json()
    assert recent["total"] == as_owner.get("/audit").json()["total"]
    problem(as_owner.get("/audit", params={"since": "yesterday"}), 400)
    problem(as_owner.get("/audit", params={"page": "0"}), 400)
    problem(as_owner.get("/audit", params={"colour": "red"}), 400)


def test_audit_log_shows_only_own_organisation(app, as_owner: Api, base_url: str) -> None:
    other_owner = make_user(app, "oscar@other.test", org_slug="other", role="owner")
    other = Api(base_url, token_for(app, other_owner, "other"))
    other.post("/roles", json={"name": "secret-project"})
    assert as_owner.get("/audit", params={"q": "secret-project"}).json()["total"] == 0
    assert other.get("/audit", params={"q": "secret-project"}).json()["total"] == 1


def test_tokens_create_list_revoke(app, as_owner: Api, base_url: str) -> None:
    created = as_owner.post("/tokens", json={"name": "deploy bot"})
    assert created.status_code == 201
    secret, tid = created.json()["token"], created.json()["id"]
    assert secret.startswith("bsc_")
    stored = fresh(ApiToken, tid)
    assert secret not in (stored.token_hash, stored.hint)  # kept hashed; shown once
    listed = as_owner.get("/tokens").json()
    assert {t["name"] for t in listed["items"]} == {"test", "deploy bot"}
    assert all("token" not in t for t in listed["items"])

    bot = Api(base_url, secret)
    assert bot.get("/me").status_code == 200
    assert as_owner.delete(f"/tokens/{tid}").status_code == 204
    refused = bot.get("/me")
    problem(refused, 401)
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    events = [e.event for e in db.session.scalars(select(AuditEvent))]
    assert {"api_token.create", "api_token.revoke"} <= set(events)


# --- a plain member's token -----------------------------------------------------------------

ADMIN_OPERATIONS = [
    ("get", "/members", None),
    ("post", "/members", {"email": "x@acme.test"}),
    ("get", "/members/{mid}", None),
    ("patch", "/members/{mid}", {"role": "owner"}),
    ("delete", "/members/{mid}", None),
    ("post", "/members/{mid}/invitation", None),
    ("post", "/members/{mid}/sessions/revoke", None),
    ("post", "/members/{mid}/factors/reset", None),
    ("get", "/roles", None),
    ("post", "/roles", {"name": "mine", "permissions": ["members.manage"]}),
    ("patch", "/roles/{rid}", {"permissions": ["members.manage"]}),
    ("delete", "/roles/{rid}", None),
    ("get", "/settings", None),
    ("patch", "/settings", {"session_max_hours": 1}),
    ("patch", "/settings", {"mfa_policy": "everyone"}),
    ("patch", "/settings", {"mfa_grace_days": 3}),
    ("get", "/audit", None),
]


def test_member_token_is_refused_admin_operations(app, owner: User, base_url: str) -> None:
    jane = make_user(app)
    role = orgs.create_role(orgs.get("acme"), "support", frozenset())
    db.session.commit()
    api = Api(base_url, token_for(app, jane))
    ids = {"mid": member_id(owner), "rid": role.id}
    for method, path, body in ADMIN_OPERATIONS:
        kwargs = {"json": body} if body is not None else {}
        response = api.request(method.upper(), path.format(**ids), **kwargs)
        assert "permission" in problem(response, 403)["detail"], (method, path)
    assert len(denials()) == len(ADMIN_OPERATIONS)
    assert denials()[0].actor_email == "jane@acme.test"
    assert denials()[0].target == "GET /api/v1/members"
    # What a member may do: see themselves, and manage their own tokens.
    assert api.get("/me").json()["permissions"] == ["messages.edit", "messages.send"]
    assert [t["email"] for t in api.get("/tokens").json()["items"]] == ["jane@acme.test"]
    assert fresh(Membership, ids["mid"]).role.name == "owner"


# --- escalation attempts --------------------------------------------------------------------


@pytest.fixture
def as_admin(app: Flask, owner: User, base_url: str) -> Api:
    admin = make_user(app, "adam@acme.test", role="admin")
    return Api(base_url, token_for(app, admin))


def test_admin_cannot_grant_a_permission_they_lack(app, as_admin: Api) -> None:
    refused = as_admin.post("/roles", json={"name": "payer", "permissions": ["billing.manage"]})
    assert "billing.manage" in problem(refused, 403)["detail"]
    assert orgs.find_role(orgs.get("acme"), "payer") is None

    role = as_admin.post("/roles", json={"name": "helper", "permissions": ["audit.read"]}).json()
    patch = as_admin.patch(f"/roles/{role['id']}", json={"permissions": ["billing.manage"]})
    problem(patch, 403)
    assert as_admin.get(f"/roles/{role['id']}").json()["permissions"] == ["audit.read"]

    problem(as_admin.post("/members", json={"email": "mole@acme.test", "role": "owner"}), 403)
    assert db.session.scalar(select(User).where(User.email == "mole@acme.test")) is None
    adam = db.session.scalar(select(User).where(User.email == "adam@acme.test"))
    problem(as_admin.patch(f"/members/{member_id(adam)}", json={"role": "owner"}), 403)
    assert fresh(Membership, member_id(adam)).role.name == "admin"

    reasons = [e.details["reason"] for e in denials()]
    assert len(reasons) == 4
    assert reasons[0] == "You cannot grant permissions you do not hold: billing.manage."
    assert {e.actor_email for e in denials()} == {"adam@acme.test"}


def test_admin_cannot_act_on_an_owner(app, as_admin: Api, owner: User) -> None:
    oid = member_id(owner)
    problem(as_admin.patch(f"/members/{oid}", json={"role": "viewer"}), 403)
    problem(as_admin.patch(f"/members/{oid}", json={"active": False}), 403)
    problem(as_admin.delete(f"/members/{oid}"), 403)
    problem(as_admin.post(f"/members/{oid}/sessions/revoke"), 403)
    problem(as_admin.post(f"/members/{oid}/factors/reset"), 403)
    assert fresh(Membership, oid).role.name == "owner"
    assert fresh(User, owner.id).is_active


def test_admin_cannot_mint_a_token_for_an_owner(app, owner: User) -> None:
    """A token acts as its user: minting one for an owner would hand an admin billing.manage."""
    admin = make_user(app, "adam@acme.test", role="admin")
    principal = authz.Principal(admin, orgs.get("acme"), "api_token")
    with pytest.raises(Forbidden):
        api_tokens.create(principal, cli_context(), owner, "stolen")
    assert db.session.scalar(select(ApiToken).where(ApiToken.name == "stolen")) is None


def test_another_organisations_member_is_not_found(app, as_owner: Api) -> None:
    stranger = make_user(app, "sam@other.test", org_slug="other", role="owner")
    sid = member_id(stranger, "other")
    other_role = orgs.get_role(orgs.get("other"), "member").id
    for response in (
        as_owner.get(f"/members/{sid}"),
        as_owner.patch(f"/members/{sid}", json={"role": "viewer"}),
        as_owner.patch(f"/members/{sid}", json={"active": False}),
        as_owner.delete(f"/members/{sid}"),
        as_owner.post(f"/members/{sid}/invitation"),
        as_owner.post(f"/members/{sid}/sessions/revoke"),
        as_owner.post(f"/members/{sid}/factors/reset"),
        as_owner.get(f"/roles/{other_role}"),
        as_owner.delete(f"/roles/{other_role}"),
    ):
        problem(response, 404)
    assert fresh(Membership, sid).role.name == "owner"
    assert fresh(User, stranger.id).is_active


def test_the_last_owner_stays(app, as_owner: Api, owner: User) -> None:
    oid = member_id(owner)
    assert "last owner" in problem(as_owner.delete(f"/members/{oid}"), 400)["detail"]
    assert (
        "last owner"
        in problem(as_owner.patch(f"/members/{oid}", json={"role": "admin"}), 400)["detail"]
    )
    assert (
        "own account"
        in problem(as_owner.patch(f"/members/{oid}", json={"active": False}), 400)["detail"]
    )
    assert fresh(Membership, oid).role.name == "owner"


def test_revoked_token_and_disabled_user_are_refused(app, owner: User, base_url: str) -> None:
    jane = make_user(app, role="admin")
    secret = token_for(app, jane)
    api = Api(base_url, secret)
    assert api.get("/members").status_code == 200
    token = db.session.scalar(select(ApiToken).where(ApiToken.user_id == jane.id))
    api_tokens.revoke(authz.operator(orgs.get("acme")), cli_context(), token.id)
    db.session.commit()
    problem(api.get("/members"), 401)

    other = Api(base_url, token_for(app, jane))
    fresh(User, jane.id).is_active = False
    db.session.commit()
    problem(other.get("/members"), 401)


def test_token_of_a_member_who_left_is_refused(app, as_owner: Api, base_url: str) -> None:
    jane = make_user(app, role="admin")
    api = Api(base_url, token_for(app, jane))
    assert api.get("/members").status_code == 200
    assert as_owner.delete(f"/members/{member_id(jane)}").status_code == 204
    for response in (api.get("/me"), api.get("/members"), api.get("/tokens")):
        assert "no longer a member" in problem(response, 403)["detail"]
    assert denials()[-1].actor_email == "jane@acme.test"


def test_session_cookie_is_not_api_authentication(
    app, owner: User, browser_client: httpx.Client
) -> None:
    assert sign_in(browser_client, "olivia@acme.test", STRONG_PASSWORD).status_code == 303
    for response in (
        browser_client.get("/api/v1/me"),
        browser_client.post("/api/v1/roles", json={"name": "x"}),
    ):
        problem(response, 401)
        assert response.headers["www-authenticate"] == 'Bearer realm="bascule"'


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer",
        "Bearer nope",
        "Basic b2xpdmlhOnB3",
        "Bearer bsc_" + "x" * 43,
        "Bearer " + "x" * 9000,
    ],
)
def test_missing_or_unknown_token_is_401(app, base_url: str, header: str) -> None:
    response = httpx.get(f"{base_url}/api/v1/members", headers={"Authorization": header})
    problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


# --- malformed input is a 4xx problem, never a 500 ------------------------------------------


def test_malformed_requests_are_refused_plainly(app, as_owner: Api, owner: User) -> None:
    oid = member_id(owner)
    json_type = {"Content-Type": "application/json"}
    cases: list[tuple[httpx.Response, int]] = [
        (as_owner.post("/roles", content=b"name=x", headers={"Content-Type": "text/plain"}), 415),
        (as_owner.post("/roles", content=b"{", headers=json_type), 400),
        (as_owner.post("/roles", content=b"[" * 100_000, headers=json_type), 400),  # too deep
        (as_owner.post("/roles", content=b'{"name": "\\ud800"}', headers=json_type), 400),
        (as_owner.post("/roles", json=["support"]), 400),
        (as_owner.post("/roles", json={"name": "support", "admin": True}), 400),
        (as_owner.post("/roles", json={"permissions": []}), 400),
        (as_owner.post("/roles", json={"name": 7}), 400),
        (as_owner.post("/roles", json={"name": "a" * 64}), 400),
        (as_owner.post("/roles", json={"name": "sup\x00port"}), 400),
        (as_owner.post("/roles", json={"name": "ok", "permissions": "audit.read"}), 400),
        (as_owner.post("/members", json={"email": "a@[b.c"}), 400),
        (as_owner.post("/members", json={"email": "x@acme.test", "name": "Eve\nBcc: x"}), 400),
        (as_owner.patch(f"/members/{oid}", json={}), 400),
        (as_owner.patch(f"/members/{oid}", json={"active": "no"}), 400),
        (as_owner.get("/members/99999999999999999999"), 404),
        (as_owner.get("/members/-1"), 404),
        (as_owner.get("/members", params={"per_page": "1000"}), 400),
        (as_owner.get("/members", params={"page": "1", "page ": "2"}), 400),
        (as_owner.get("/members?page=1&page=2"), 400),
        (as_owner.get("/audit?until="), 400),
        (as_owner.get("/audit?q=%00"), 400),
        (as_owner.get("/audit?since=0001-01-01T00:00:00%2B14:00"), 400),
        (as_owner.post("/roles", content=b" " * (1024 * 1024 + 1), headers=json_type), 413),
        (as_owner.put("/members"), 405),
        (as_owner.get("/nothing-here"), 404),
    ]
    for response, status in cases:
        problem(response, status)
    assert cases[-2][0].headers["allow"] == "GET, HEAD, OPTIONS, POST"
