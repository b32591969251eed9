"""The admin API's OpenAPI 3.1 document, served at /api/v1/openapi.json.

Kept beside the views it describes and exact enough to fuzz from (tests/functional/
test_api_fuzz.py does): every operation, parameter, body and answer, errors included.
"""

from __future__ import annotations

from typing import Any

from idp.config import Settings
from idp.views.api_saml_schemas import CONNECTION_SLUG, SAML_SCHEMAS
from idp.views.api_schemas import CLIENT_ID, ID, PLAIN, TIME, Schema, ref, schemas, string

PROBLEM = "application/problem+json"
ERRORS = {
    400: "The request is malformed, or a rule refused it (the detail says which).",
    401: "No valid API token: missing, unknown, revoked, or its user is disabled.",
    403: "The token's user lacks the permission, or is not a member of the organisation.",
    404: "No such thing in the token's organisation.",
    405: "The address does not take this method (the Allow header lists those it does).",
    413: "The request body is too large.",
    415: "The request body is not application/json.",
}


def _json(schema: Schema, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(
    op_id: str,
    summary: str,
    tag: str,
    ok: dict[str, Any],
    *,
    body: str | None = None,
    params: list[dict[str, Any]] | None = None,
    body_required: bool = True,
) -> dict[str, Any]:
    """An authenticated operation, with every error it can answer."""
    codes = [400, 401, 403, 404, 405]
    if body is not None:
        codes += [413, 415]
    operation: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "tags": [tag],
        "responses": {**ok, **{str(c): {"$ref": f"#/components/responses/E{c}"} for c in codes}},
    }
    if body is not None:
        content = {"application/json": {"schema": ref(body)}}
        operation["requestBody"] = {"required": body_required, "content": content}
    if params:
        operation["parameters"] = params
    return operation


def _ok(status: int, schema: str, description: str) -> dict[str, Any]:
    return {str(status): _json(ref(schema), description)}


def _path_id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": ID}


def _query(name: str, schema: Schema, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


NO_CONTENT = {"204": {"description": "Done; no content."}}
PAGING = [
    _query("page", {"type": "integer", "minimum": 1, "maximum": 100_000}, "From 1 (default)."),
    _query("per_page", {"type": "integer", "minimum": 1, "maximum": 200}, "Default 50."),
]
AUDIT_FILTERS = [
    _query("actor", string(254, pattern=PLAIN), "Part of the actor's email (any case)."),
    _query("event", string(63, pattern=PLAIN), "An event (member.invite) or family (member)."),
    _query("since", TIME, "Events at or after this time (RFC 3339)."),
    _query("until", TIME, "Events before this time (RFC 3339)."),
    _query("q", string(200, pattern=PLAIN), "Text in the event, actor, target or details."),
]

MEMBER_ID = [_path_id("member_id")]
CLIENT_PARAM = [{"name": "client_id", "in": "path", "required": True, "schema": CLIENT_ID}]
ROLE_ID = [_path_id("role_id")]
SAML_SLUG = [{"name": "slug", "in": "path", "required": True, "schema": CONNECTION_SLUG}]

PATHS: dict[str, Any] = {
    "/api/v1/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document (no token needed)",
            "tags": ["meta"],
            "security": [],
            "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
        }
    },
    "/api/v1/me": {
        "get": _op("me", "Who the token acts as, where, allowed what", "meta", _ok(200, "Me", "")),
    },
    "/api/v1/members": {
        "get": _op(
            "listMembers", "List members", "members",
            _ok(200, "MemberList", "A page of members, by email."), params=PAGING,
        ),
        "post": _op(
            "inviteMember", "Invite someone (a new account gets a link to set a password)",
            "members", _ok(201, "MemberInvited", "Invited."), body="MemberInvite",
        ),
    },
    "/api/v1/members/{member_id}": {
        "parameters": MEMBER_ID,
        "get": _op("getMember", "One member", "members", _ok(200, "Member", "The member.")),
        "patch": _op(
            "updateMember", "Change the role, then disable or re-enable the account "
            "(each is made on its own: if the second is refused, the first stays)",
            "members", _ok(200, "Member", "The member after the change."), body="MemberPatch",
        ),
        "delete": _op("removeMember", "Remove from the organisation", "members", NO_CONTENT),
    },
    "/api/v1/members/{member_id}/invitation": {
        "parameters": MEMBER_ID,
        "post": _op(
            "resendInvitation", "Send the invitation again (a new link)", "members",
            _ok(200, "Invitation", "Sent."),
        ),
    },
    "/api/v1/members/{member_id}/sessions/revoke": {
        "parameters": MEMBER_ID,
        "post": _op(
            "revokeMemberSessions", "End every session of the member", "members",
            _ok(200, "SessionsRevoked", "Ended."),
        ),
    },
    "/api/v1/members/{member_id}/factors/reset": {
        "parameters": MEMBER_ID,
        "post": _op(
            "resetMemberFactors", "Remove the member's second factors and recovery codes (for a "
            "lost phone or key); only for a member whose permissions you all hold",
            "members", _ok(200, "FactorsRemoved", "What was removed."),
        ),
    },
    "/api/v1/roles": {
        "get": _op(
            "listRoles", "List roles (built-in first)", "roles",
            _ok(200, "RoleList", "A page of roles."), params=PAGING,
        ),
        "post": _op(
            "createRole", "Create a custom role (only with permissions you hold)", "roles",
            _ok(201, "Role", "Created."), body="RoleCreate",
        ),
    },
    "/api/v1/roles/{role_id}": {
        "parameters": ROLE_ID,
        "get": _op("getRole", "One role", "roles", _ok(200, "Role", "The role.")),
        "patch": _op(
            "updateRole", "Replace a custom role's permissions", "roles",
            _ok(200, "Role", "The role after the change."), body="RolePatch",
        ),
        "delete": _op("deleteRole", "Delete a custom role no one holds", "roles", NO_CONTENT),
    },
    "/api/v1/settings": {
        "get": _op(
            "getSettings", "The security settings in force", "settings",
            _ok(200, "Settings", "The settings."),
        ),
        "patch": _op(
            "updateSettings", "Change some security settings (within the instance's bounds) "
            "and the two-factor policy",
            "settings", _ok(200, "Settings", "The settings after the change."),
            body="SettingsPatch",
        ),
    },
    "/api/v1/audit": {
        "get": _op(
            "listAuditEvents", "Search the audit log, newest first", "audit",
            _ok(200, "AuditList", "A page of events."), params=AUDIT_FILTERS + PAGING,
        ),
    },
    "/api/v1/clients": {
        "get": _op(
            "listClients", "The organisation's OpenID Connect clients, by name", "clients",
            _ok(200, "ClientList", "A page of clients."), params=PAGING,
        ),
        "post": _op(
            "createClient", "Register a (third-party) client; a confidential one's secret is "
            "answered once", "clients", _ok(201, "ClientCreated", "Registered."),
            body="ClientCreate",
        ),
    },
    "/api/v1/clients/{client_id}": {
        "parameters": CLIENT_PARAM,
        "get": _op("getClient", "One client", "clients", _ok(200, "Client", "The client.")),
        "patch": _op(
            "updateClient", "Rename a client or replace its URIs (each list whole)", "clients",
            _ok(200, "Client", "The client after the change."), body="ClientPatch",
        ),
        "delete": _op(
            "deleteClient", "Delete a client and everything issued to it", "clients", NO_CONTENT
        ),
    },
    "/api/v1/clients/{client_id}/secret": {
        "parameters": CLIENT_PARAM,
        "post": _op(
            "resetClientSecret", "A new secret for a confidential client (answered once); "
            "the old one stops working at once", "clients", _ok(200, "ClientSecret", "Made."),
        ),
    },
    "/api/v1/saml/connections": {
        "get": _op(
            "listSamlConnections", "The organisation's SAML single sign-on connections, by "
            "slug", "saml", _ok(200, "SamlConnectionList", "A page of connections."),
            params=PAGING,
        ),
        "post": _op(
            "createSamlConnection", "Connect the organisation to its SAML IdP, from the IdP's "
            "metadata (metadata_xml, else fetched from metadata_url)", "saml",
            _ok(201, "SamlConnection", "Created, with the URLs to give the IdP."),
            body="SamlConnectionCreate",
        ),
    },
    "/api/v1/saml/connections/{slug}": {
        "parameters": SAML_SLUG,
        "get": _op(
            "getSamlConnection", "One connection", "saml",
            _ok(200, "SamlConnection", "The connection."),
        ),
        "patch": _op(
            "updateSamlConnection", "Change some settings (each list or mapping given is "
            "replaced whole)", "saml",
            _ok(200, "SamlConnection", "The connection after the change."),
            body="SamlConnectionPatch",
        ),
        "delete": _op(
            "deleteSamlConnection", "Delete a connection (its people keep their accounts)",
            "saml", NO_CONTENT,
        ),
    },
    "/api/v1/saml/connections/{slug}/refresh": {
        "parameters": SAML_SLUG,
        "post": _op(
            "refreshSamlMetadata", "Take the IdP's metadata again: metadata_xml from the body, "
            "else fetched from the connection's metadata_url", "saml",
            _ok(200, "SamlConnection", "The connection with the new metadata."),
            body="SamlMetadataRefresh", body_required=False,
        ),
    },
    "/api/v1/tokens": {
        "get": _op(
            "listTokens", "Your API tokens (the organisation's, with members.manage)", "tokens",
            _ok(200, "TokenList", "A page of tokens."), params=PAGING,
        ),
        "post": _op(
            "createToken", "Create an API token for yourself (the secret is shown once)",
            "tokens", _ok(201, "TokenCreated", "Created."), body="TokenCreate",
        ),
    },
    "/api/v1/tokens/{token_id}": {
        "parameters": [_path_id("token_id")],
        "delete": _op(
            "revokeToken", "Revoke a token; it stops working at once", "tokens", NO_CONTENT
        ),
    },
}  # fmt: skip


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The document for this instance: its address as the server, its settings' bounds."""
    responses: dict[str, Any] = {}
    for code, description in ERRORS.items():
        responses[f"E{code}"] = {
            "description": description,
            "content": {PROBLEM: {"schema": ref("Problem")}},
        }
    responses["E401"]["headers"] = {
        "WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer challenge."}
    }
    responses["E405"]["headers"] = {
        "Allow": {"schema": {"type": "string"}, "description": "The methods it takes."}
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Bascule admin API",
            "version": "1.0.0",
            "description": (
                "Manage an organisation's members (and their second factors), roles, security "
                "settings (the two-factor policy among them), OpenID Connect clients, SAML "
                "single sign-on connections and API tokens, and read its audit log. "
                "Authenticate with a personal API token "
                "(`bascule tokens create`, or POST /api/v1/tokens) sent as "
                "`Authorization: Bearer <token>`. "
                "Errors are RFC 9457 problem documents (application/problem+json). Lists take "
                "`page` and `per_page` and answer `items`, `total`, `page` and `per_page`."
            ),
        },
        "servers": [{"url": settings.issuer}],
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A personal API token (bsc_…).",
                }
            },
            "schemas": schemas(settings) | SAML_SCHEMAS,
            "responses": responses,
        },
    }
