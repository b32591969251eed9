"""The authorization matrix: every admin page, API endpoint and CLI command, for every role.

Each table row names what an operation needs; the test performs the operation as a member of
each built-in role and of a custom role, and asserts it was allowed (2xx/3xx) or refused (403).
A route under /admin or /api/v1 (or a CLI command) missing from the tables fails the test, so
a new endpoint cannot ship without a decision here. Every request gets fresh targets (a member,
a custom role, a token), so no operation depends on what an earlier one did.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any

import click
import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.cli import main as cli_main
from idp.common import permissions as p
from idp.extensions import db
from idp.runtime import runtime
from idp.services import api_tokens, authz, orgs, users
from idp.services.oidc import clients
from idp.services.saml import connections
from tests.saml.support import FakeIdp
from tests.support import STRONG_PASSWORD, cli_context, make_user

ANY_ADMIN = "any administrative permission"
ANY_MEMBER = "any member"
PUBLIC = "public"
Need = frozenset[str] | str

CUSTOM_ROLE = frozenset({p.AUDIT_READ, p.USER_DATA_READ})
ROLES: dict[str, frozenset[str]] = {**p.BUILTIN_ROLES, "auditor": CUSTOM_ROLE}


@cache
def idp_metadata() -> str:
    """One forged IdP's metadata for every connection the matrix makes (a key pair is slow)."""
    return FakeIdp().metadata()


@dataclass
class Targets:
    """Fresh objects for one request: a viewer without a password, an unused custom role, that
    viewer's API token, a confidential OIDC client of the organisation, and (made only when a
    call asks, since each has its own key pair) a SAML connection of the organisation."""

    member_id: int
    role_id: int
    token_id: int
    client_id: str
    suffix: str

    @cached_property
    def saml_slug(self) -> str:
        org = orgs.get("acme")
        conn = connections.create(
            authz.operator(org),
            cli_context(),
            runtime().keyring,
            f"sso-{self.suffix}",
            connections.load_metadata(authz.operator(org), idp_metadata(), None),
            connections.Changes(),
        )
        db.session.commit()
        return conn.slug


# (method, URL rule) -> what it needs, and how to call it: a function giving path and body.
Call = Callable[[Targets], tuple[str, dict[str, Any] | None]]


def _member_action(action: str) -> Call:
    return lambda t: (f"/admin/members/{t.member_id}/{action}", {})


CLIENT_FORM = {
    "name": "Wiki",
    "redirect_uris": "https://wiki.example/cb",
    "post_logout_redirect_uris": "",
    "backchannel_logout_uri": "",
}


SSO_SETTINGS_FORM = {
    "domains": "",
    "attr_email": "email",
    "attr_given_name": "",
    "attr_family_name": "",
    "attr_groups": "groups",
    "group_roles": "",
    "default_role": "member",
    "preset": "",
    "metadata_url": "",
}


def _sso(path: str = "", form: dict[str, str] | None = None) -> Call:
    return lambda t: (f"/admin/sso/{t.saml_slug}{path}", form)


def _api_saml(path: str = "", body: dict[str, Any] | None = None) -> Call:
    return lambda t: (f"/api/v1/saml/connections/{t.saml_slug}{path}", body)


CONSOLE: dict[tuple[str, str], tuple[Need, Call]] = {
    ("GET", "/admin"): (ANY_ADMIN, lambda t: ("/admin", None)),
    ("GET", "/admin/audit"): (frozenset({p.AUDIT_READ}), lambda t: ("/admin/audit", None)),
    ("GET", "/admin/audit.jsonl"): (
        frozenset({p.AUDIT_READ}),
        lambda t: ("/admin/audit.jsonl", None),
    ),
    ("GET", "/admin/members"): (frozenset({p.MEMBERS_MANAGE}), lambda t: ("/admin/members", None)),
    ("POST", "/admin/members/invite"): (
        frozenset({p.MEMBERS_MANAGE}),
        lambda t: (
            "/admin/members/invite",
            {"email": f"new-{t.suffix}@acme.test", "role": "viewer"},
        ),
    ),
    **{
        ("POST", f"/admin/members/<int:member_id>/{action}"): (
            frozenset({p.MEMBERS_MANAGE}),
            _member_action(action),
        )
        for action in ("disable", "enable", "remove", "resend", "revoke-sessions")
    },
    ("GET", "/admin/members/<int:member_id>/remove"): (
        frozenset({p.MEMBERS_MANAGE}),
        lambda t: (f"/admin/members/{t.member_id}/remove", None),
    ),
    ("POST", "/admin/members/<int:member_id>/role"): (
        frozenset({p.MEMBERS_MANAGE}),
        lambda t: (f"/admin/members/{t.member_id}/role", {"role": "member"}),
    ),
    ("GET", "/admin/members/<int:member_id>/factors/reset"): (
        frozenset({p.MEMBERS_MANAGE}),
        lambda t: (f"/admin/members/{t.member_id}/factors/reset", None),
    ),
    ("POST", "/admin/members/<int:member_id>/factors/reset"): (
        frozenset({p.MEMBERS_MANAGE}),
        _member_action("factors/reset"),
    ),
    ("POST", "/admin/settings/2fa"): (
        frozenset({p.SECURITY_MANAGE}),
        lambda t: ("/admin/settings/2fa", {"mfa_policy": "off", "mfa_grace_days": ""}),
    ),
    ("GET", "/admin/roles"): (frozenset({p.MEMBERS_MANAGE}), lambda t: ("/admin/roles", None)),
    ("POST", "/admin/roles"): (
        frozenset({p.MEMBERS_MANAGE}),
        lambda t: ("/admin/roles", {"name": f"r-{t.suffix}"}),
    ),
    ("GET", "/admin/roles/<int:role_id>"): (
        frozenset({p.MEMBERS_MANAGE}),
        lambda t: (f"/admin/roles/{t.role_id}", None),
    ),
    ("POST", "/admin/roles/<int:role_id>"): (
        frozenset({p.MEMBERS_MANAGE}),
        lambda t: (f"/admin/roles/{t.role_id}", {"permissions": p.MESSAGES_SEND}),
    ),
    ("POST", "/admin/roles/<int:role_id>/delete"): (
        frozenset({p.MEMBERS_MANAGE}),
        lambda t: (f"/admin/roles/{t.role_id}/delete", {}),
    ),
    ("GET", "/admin/settings"): (
        frozenset({p.SECURITY_MANAGE}),
        lambda t: ("/admin/settings", None),
    ),
    ("GET", "/admin/clients"): (frozenset({p.SECURITY_MANAGE}), lambda t: ("/admin/clients", None)),
    ("POST", "/admin/clients"): (
        frozenset({p.SECURITY_MANAGE}),
        lambda t: ("/admin/clients", CLIENT_FORM | {"type": "confidential"}),
    ),
    ("GET", "/admin/clients/<client:client_id>"): (
        frozenset({p.SECURITY_MANAGE}),
        lambda t: (f"/admin/clients/{t.client_id}", None),
    ),
    ("POST", "/admin/clients/<client:client_id>"): (
        frozenset({p.SECURITY_MANAGE}),
        lambda t: (f"/admin/clients/{t.client_id}", CLIENT_FORM),
    ),
    ("POST", "/admin/clients/<client:client_id>/secret"): (
        frozenset({p.SECURITY_MANAGE}),
        lambda t: (f"/admin/clients/{t.client_id}/secret", {}),
    ),
    ("GET", "/admin/clients/<client:client_id>/delete"): (
        frozenset({p.SECURITY_MANAGE}),
        lambda t: (f"/admin/clients/{t.client_id}/delete", None),
    ),
    ("POST", "/admin/clients/<client:client_id>/delete"): (
        frozenset({p.SECURITY_MANAGE}),
        lambda t: (f"/admin/clients/{t.client_id}/delete", {}),
    ),
    ("POST", "/admin/settings"): (
        frozenset({p.SECURITY_MANAGE}),
        lambda t: (
            "/admin/settings",
            {"session_idle_minutes": "20", "session_max_hours": "8", "password_min_length": "14"},
        ),
    ),
    ("GET", "/admin/sso"): (frozenset({p.SECURITY_MANAGE}), lambda t: ("/admin/sso", None)),
    ("POST", "/admin/sso"): (
        frozenset({p.SECURITY_MANAGE}),
        lambda t: ("/admin/sso", {"slug": f"new-{t.suffix}", "metadata_xml": idp_metadata()}),
    ),
    ("GET", "/admin/sso/<slug>"): (frozenset({p.SECURITY_MANAGE}), _sso()),
    ("POST", "/admin/sso/<slug>"): (frozenset({p.SECURITY_MANAGE}), _sso("", SSO_SETTINGS_FORM)),
    ("POST", "/admin/sso/<slug>/refresh"): (
        frozenset({p.SECURITY_MANAGE}),
        _sso("/refresh", {"metadata_xml": idp_metadata()}),
    ),
    # A link to the IdP (303), not a form: see idp/views/admin/sso.py.
    ("GET", "/admin/sso/<slug>/test"): (frozenset({p.SECURITY_MANAGE}), _sso("/test")),
    ("GET", "/admin/sso/<slug>/delete"): (frozenset({p.SECURITY_MANAGE}), _sso("/delete")),
    ("POST", "/admin/sso/<slug>/delete"): (frozenset({p.SECURITY_MANAGE}), _sso("/delete", {})),
}

API: dict[tuple[str, str], tuple[Need, Call]] = {
    ("GET", "/api/v1/openapi.json"): (PUBLIC, lambda t: ("/api/v1/openapi.json", None)),
    ("GET", "/api/v1/me"): (ANY_MEMBER, lambda t: ("/api/v1/me", None)),
    ("GET", "/api/v1/audit"): (frozenset({p.AUDIT_READ}), lambda t: ("/api/v1/audit", None)),
    ("GET", "/api/v1/members"): (
        frozenset({p.MEMBERS_MANAGE}),
        lambda t: ("/api/v1/members", None),
    ),
    ("POST", "/api/v1/members"): (
        frozenset({p.MEMBERS_MANAGE}),
        lambda t: ("/api/v1/members", {"email": f"new-{t.suffix}@acme.test", "role": "viewer"}),
    ),
    ("GET", "/api/v1/members/<id:member_id>"): (
        frozenset({p.MEMBERS_MANAGE}),
        lambda t: (f"/api/v1/members/{t.member_id}", None),
    ),
    ("PATCH", "/api/v1/members/<id:member_id>"): (
        frozenset({p.MEMBERS_MANAGE}),
        lambda t: (f"/api/v1/members/{t.member_id}", {"role": "member"}),
    ),
    ("DELETE", "/api/v1/members/<id:member_id>"): (
        frozenset({p.MEMBERS_MANAGE}),
        lambda t: (f"/api/v1/members/{t.member_id}", None),
    ),
    ("POST", "/api/v1/members/<id:member_id>/invitation"): (
        frozenset({p.MEMBERS_MANAGE}),
        lambda t: (f"/api/v1/members/{t.member_id}/invitation", {}),
    ),
    ("POST", "/api/v1/members/<id:member_id>/sessions/revoke"): (
        frozenset({p.MEMBERS_MANAGE}),
        lambda t: (f"/api/v1/members/{t.member_id}/sessions/revoke", {}),
    ),
    ("POST", "/api/v1/members/<id:member_id>/factors/reset"): (
        frozenset({p.MEMBERS_MANAGE}),
        lambda t: (f"/api/v1/members/{t.member_id}/factors/reset", None),
    ),
    ("GET", "/api/v1/roles"): (frozenset({p.MEMBERS_MANAGE}), lambda t: ("/api/v1/roles", None)),
    ("POST", "/api/v1/roles"): (
        frozenset({p.MEMBERS_MANAGE}),
        lambda t: ("/api/v1/roles", {"name": f"r-{t.suffix}", "permissions": []}),
    ),
    ("GET", "/api/v1/roles/<id:role_id>"): (
        frozenset({p.MEMBERS_MANAGE}),
        lambda t: (f"/api/v1/roles/{t.role_id}", None),
    ),
    ("PATCH", "/api/v1/roles/<id:role_id>"): (
        frozenset({p.MEMBERS_MANAGE}),
        lambda t: (f"/api/v1/roles/{t.role_id}", {"permissions": [p.MESSAGES_SEND]}),
    ),
    ("DELETE", "/api/v1/roles/<id:role_id>"): (
        frozenset({p.MEMBERS_MANAGE}),
        lambda t: (f"/api/v1/roles/{t.role_id}", None),
    ),
    ("GET", "/api/v1/settings"): (
        frozenset({p.SECURITY_MANAGE}),
        lambda t: ("/api/v1/settings", None),
    ),
    ("PATCH", "/api/v1/settings"): (
        frozenset({p.SECURITY_MANAGE}),
        lambda t: ("/api/v1/settings", {"session_idle_minutes": 20}),
    ),
    ("GET", "/api/v1/clients"): (
        frozenset({p.SECURITY_MANAGE}),
        lambda t: ("/api/v1/clients", None),
    ),
    ("POST", "/api/v1/clients"): (
        frozenset({p.SECURITY_MANAGE}),
        lambda t: (
            "/api/v1/clients",
            {"name": "Wiki", "redirect_uris": ["https://wiki.example/cb"]},
        ),
    ),
    ("GET", "/api/v1/clients/<client:client_id>"): (
        frozenset({p.SECURITY_MANAGE}),
        lambda t: (f"/api/v1/clients/{t.client_id}", None),
    ),
    ("PATCH", "/api/v1/clients/<client:client_id>"): (
        frozenset({p.SECURITY_MANAGE}),
        lambda t: (f"/api/v1/clients/{t.client_id}", {"name": "Renamed"}),
    ),
    ("DELETE", "/api/v1/clients/<client:client_id>"): (
        frozenset({p.SECURITY_MANAGE}),
        lambda t: (f"/api/v1/clients/{t.client_id}", None),
    ),
    ("POST", "/api/v1/clients/<client:client_id>/secret"): (
        frozenset({p.SECURITY_MANAGE}),
        lambda t: (f"/api/v1/clients/{t.client_id}/secret", None),
    ),
    ("GET", "/api/v1/saml/connections"): (
        frozenset({p.SECURITY_MANAGE}),
        lambda t: ("/api/v1/saml/connections", None),
    ),
    ("POST", "/api/v1/saml/connections"): (
        frozenset({p.SECURITY_MANAGE}),
        lambda t: (
            "/api/v1/saml/connections",
            {"slug": f"new-{t.suffix}", "metadata_xml": idp_metadata()},
        ),
    ),
    ("GET", "/api/v1/saml/connections/<slug>"): (frozenset({p.SECURITY_MANAGE}), _api_saml()),
    ("PATCH", "/api/v1/saml/connections/<slug>"): (
        frozenset({p.SECURITY_MANAGE}),
        _api_saml("", {"allow_idp_initiated": True}),
    ),
    ("DELETE", "/api/v1/saml/connections/<slug>"): (frozenset({p.SECURITY_MANAGE}), _api_saml()),
    ("POST", "/api/v1/saml/connections/<slug>/refresh"): (
        frozenset({p.SECURITY_MANAGE}),
        _api_saml("/refresh", {"metadata_xml": idp_metadata()}),
    ),
    # Tokens: everyone lists and makes their own; revoking another member's needs the right.
    ("GET", "/api/v1/tokens"): (ANY_MEMBER, lambda t: ("/api/v1/tokens", None)),
    ("POST", "/api/v1/tokens"): (ANY_MEMBER, lambda t: ("/api/v1/tokens", {"name": "ci"})),
    ("DELETE", "/api/v1/tokens/<id:token_id>"): (
        frozenset({p.MEMBERS_MANAGE}),
        lambda t: (f"/api/v1/tokens/{t.token_id}", None),
    ),
}

# The CLI is the operator's: whoever runs it holds the keys and the database, so it acts as
# root (authz.operator) through the same services, which still enforce every rule but
# permissions (last owner, audit). Listed so a new command needs a decision too.
CLI_COMMANDS: dict[str, str] = dict.fromkeys(
    [
        "init", "serve", "orgs create", "users create", "users set-role", "users disable",
        "users enable", "sessions revoke", "roles create", "roles grant", "roles revoke",
        "tokens create", "tokens revoke", "audit export", "audit verify", "clients create",
        "clients list", "clients reset-secret", "clients delete", "keys rotate", "policy check",
        "policy replay", "saml add", "saml set", "saml list", "saml show", "saml metadata",
        "saml refresh", "saml remove",
    ],
    "operator",
)  # fmt: skip


def allowed(need: Need, held: frozenset[str]) -> bool:
    if need in (PUBLIC, ANY_MEMBER):
        return True
    if need == ANY_ADMIN:
        return bool(held & p.ADMINISTRATIVE)
    assert isinstance(need, frozenset)
    return need <= held


def _routes(app: Flask, prefix: str) -> set[tuple[str, str]]:
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.rule == prefix or rule.rule.startswith(prefix + "/")
        for method in rule.methods or ()
        if method not in {"HEAD", "OPTIONS"}
    }


def _cli_commands(group: click.Group, prefix: str = "") -> set[str]:
    found = set()
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found |= _cli_commands(command, f"{prefix}{name} ")
        else:
            found.add(f"{prefix}{name}")
    return found


def test_every_endpoint_and_command_has_an_entry(app: Flask) -> None:
    assert _routes(app, "/admin") == set(CONSOLE)
    assert _routes(app, "/api/v1") == set(API)
    assert _cli_commands(cli_main) == set(CLI_COMMANDS)


@pytest.fixture
def matrix_app(settings, extra_app) -> Flask:  # type: ignore[no-untyped-def]
    """The app with CSRF off: this test is about permissions, CSRF has tests of its own."""
    flask_app = extra_app(settings, flask_config={"WTF_CSRF_ENABLED": False})
    with flask_app.app_context():
        org = orgs.create("acme", "Acme")
        db.session.commit()
        orgs.create_role(org, "auditor", CUSTOM_ROLE)
        db.session.commit()
        for role in ROLES:
            make_user(flask_app, f"{role}@acme.test", role=role)
    return flask_app


def _fresh_targets() -> Targets:
    org = orgs.get("acme")
    suffix = uuid.uuid4().hex[:8]
    target = users.create_user(f"target-{suffix}@acme.test")
    orgs.add_member(target, org, orgs.get_role(org, "viewer"))
    role = orgs.create_role(org, f"scratch-{suffix}", frozenset())
    db.session.commit()
    token = api_tokens.create(authz.operator(org), cli_context(), target, "target").token
    db.session.commit()
    client = clients.create_client(f"c-{suffix}", ["https://app.example/cb"], org_id=org.id)
    member = orgs.membership(target, org)
    assert member is not None
    return Targets(member.id, role.id, token.id, client.client.id, suffix)


def _signed_in(app: Flask, role: str) -> FlaskClient:
    client = app.test_client()
    response = client.post(
        "/login", data={"email": f"{role}@acme.test", "password": STRONG_PASSWORD}
    )
    assert response.status_code == 303, response.text
    return client


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # authz is the same SQL anywhere
@pytest.mark.parametrize("route", sorted(CONSOLE), ids=" ".join)
def test_console_matrix(matrix_app: Flask, route: tuple[str, str]) -> None:
    need, call = CONSOLE[route]
    with matrix_app.app_context():
        for role, held in ROLES.items():
            client = _signed_in(matrix_app, role)
            path, form = call(_fresh_targets())
            response = client.open(path, method=route[0], data=form)
            response.get_data()  # drain streamed bodies (the JSONL download) before moving on
            response.close()
            verdict = f"{role} {route[0]} {path} -> {response.status_code}"
            if allowed(need, held):
                assert response.status_code < 400, verdict
            else:
                assert response.status_code == 403, verdict


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("route", sorted(API), ids=" ".join)
def test_api_matrix(matrix_app: Flask, route: tuple[str, str]) -> None:
    need, call = API[route]
    with matrix_app.app_context():
        org = orgs.get("acme")
        for role, held in ROLES.items():
            user = users.get_by_email(f"{role}@acme.test")
            secret = api_tokens.create(authz.operator(org), cli_context(), user, role).secret
            db.session.commit()
            path, body = call(_fresh_targets())
            response = matrix_app.test_client().open(
                path, method=route[0], json=body, headers={"Authorization": f"Bearer {secret}"}
            )
            verdict = f"{role} {route[0]} {path} -> {response.status_code}"
            if allowed(need, held):
                assert response.status_code < 400, verdict
            else:
                assert response.status_code == 403, verdict
                assert response.mimetype == "application/problem+json"
