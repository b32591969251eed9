"""JSON Schemas of the admin API's bodies, for its OpenAPI document (see ``api_spec``).

Every type, length, pattern and range here is what ``api_input`` and the services enforce,
so a fuzzer that follows the document reaches the services, and one that breaks it is refused.
"""

from __future__ import annotations

from typing import Any

from idp.common import permissions
from idp.config import Settings
from idp.services import mfa_policy, org_settings
from idp.services.oidc import client_admin

Schema = dict[str, Any]

MAX_ID = 999_999_999  # nine digits: see IdConverter in api.py
# No control characters (api_input.text refuses them), written as JSON Schema (ECMA-262) wants.
PLAIN = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
SLUG = "^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def string(max_length: int, min_length: int = 0, **extra: Any) -> Schema:
    return {"type": "string", "minLength": min_length, "maxLength": max_length, **extra}


def text(max_length: int, min_length: int = 0, **extra: Any) -> Schema:
    """A string without control characters."""
    return string(max_length, min_length, pattern=PLAIN, **extra)


def list_of(item: str) -> Schema:
    return obj(
        {
            "items": {"type": "array", "items": ref(item)},
            "total": {"type": "integer", "minimum": 0},
            "page": {"type": "integer", "minimum": 1},
            "per_page": {"type": "integer", "minimum": 1},
        },
        ["items", "total", "page", "per_page"],
    )


STR: Schema = {"type": "string"}
NULLABLE_STR: Schema = {"type": ["string", "null"]}
TIME: Schema = {"type": "string", "format": "date-time"}
NULLABLE_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
ID: Schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
PERMISSION: Schema = {"type": "string", "enum": sorted(permissions.ALL)}
PERMISSIONS: Schema = {"type": "array", "maxItems": 50, "items": PERMISSION}
ROLE_NAME = string(63, 1, pattern=SLUG, description="A role of the organisation.")
MFA_POLICY: Schema = {
    "type": "string",
    "enum": list(mfa_policy.POLICIES),
    "description": "Who must use a second factor: nobody (off), holders of an administrative "
    "permission (admins), or everyone.",
}
COUNT: Schema = {"type": "integer", "minimum": 0}

CLIENT_ID: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": 64,
    "pattern": "^[A-Za-z0-9_-]+$",
    "description": "A client_id.",
}
URI_LIST: Schema = {
    "type": "array",
    "maxItems": client_admin.MAX_URIS,
    "items": text(client_admin.MAX_URI, 1),
}
REDIRECT_URIS: Schema = {
    **URI_LIST,
    "minItems": 1,
    "description": "Where sign-ins may return, each matched exactly: absolute https URLs (plain "
    "http only for localhost), without a fragment or credentials.",
}
POST_LOGOUT_URIS: Schema = {
    **URI_LIST,
    "description": "Where the client may send people after RP-initiated logout.",
}
BACKCHANNEL_URI: Schema = {
    "type": ["string", "null"],
    "maxLength": client_admin.MAX_URI,
    "pattern": PLAIN,
    "description": "Where Bascule posts a logout token when a session that signed in to the "
    "client ends; a public https URL. Null or empty: none.",
}
CLIENT_NAME = text(client_admin.MAX_NAME, 1, description="Shown on the consent page.")
CLIENT = obj(
    {
        "client_id": STR,
        "name": STR,
        "type": {"type": "string", "enum": ["confidential", "public"]},
        "auth_method": {
            "type": "string",
            "description": "Token endpoint authentication (client_secret_basic, or none).",
        },
        "first_party": {
            "type": "boolean",
            "description": "Skips the consent page; only the operator can register one.",
        },
        "redirect_uris": {"type": "array", "items": STR},
        "post_logout_redirect_uris": {"type": "array", "items": STR},
        "backchannel_logout_uri": NULLABLE_STR,
        "grant_types": {"type": "array", "items": STR},
        "id_token_signed_response_alg": STR,
    },
    [
        "client_id",
        "name",
        "type",
        "auth_method",
        "first_party",
        "redirect_uris",
        "post_logout_redirect_uris",
        "backchannel_logout_uri",
        "grant_types",
        "id_token_signed_response_alg",
    ],
)

TOKEN = obj(
    {
        "id": ID,
        "name": STR,
        "user_id": STR,
        "email": STR,
        "hint": {"type": "string", "description": "The token's first characters."},
        "created_at": TIME,
        "last_used_at": NULLABLE_TIME,
        "revoked_at": NULLABLE_TIME,
    },
    ["id", "name", "user_id", "email", "hint", "created_at", "last_used_at", "revoked_at"],
)

SCHEMAS: dict[str, Schema] = {
    "Problem": {
        "type": "object",
        "description": "An RFC 9457 problem document.",
        "properties": {"type": STR, "title": STR, "status": {"type": "integer"}, "detail": STR},
        "required": ["type", "title", "status", "detail"],
    },
    "Me": obj(
        {
            "user": obj({"id": STR, "email": STR, "name": STR}, ["id", "email", "name"]),
            "org": obj({"id": STR, "slug": STR, "name": STR}, ["id", "slug", "name"]),
            "role": STR,
            "permissions": {"type": "array", "items": PERMISSION},
        },
        ["user", "org", "role", "permissions"],
    ),
    "Member": obj(
        {
            "id": ID,
            "user_id": STR,
            "email": STR,
            "name": STR,
            "role": STR,
            "active": {"type": "boolean"},
            "has_password": {
                "type": "boolean",
                "description": "False until an invitation is accepted (or for SSO-only accounts).",
            },
            "joined_at": TIME,
        },
        ["id", "user_id", "email", "name", "role", "active", "has_password", "joined_at"],
    ),
    "MemberList": list_of("Member"),
    "MemberInvite": obj(
        {
            "email": string(254, 1, format="email"),
            "role": {**ROLE_NAME, "default": "member"},
            "name": text(200),
        },
        ["email"],
    ),
    "MemberInvited": obj(
        {
            "member": ref("Member"),
            "invitation_link": {
                **NULLABLE_STR,
                "description": "The link with which a new account sets its password "
                "(null for an account that has one). Also mailed.",
            },
        },
        ["member", "invitation_link"],
    ),
    "MemberPatch": {**obj({"role": ROLE_NAME, "active": {"type": "boolean"}}), "minProperties": 1},
    "Invitation": obj({"invitation_link": STR}, ["invitation_link"]),
    "SessionsRevoked": obj(
        {"sessions_revoked": {"type": "integer", "minimum": 0}}, ["sessions_revoked"]
    ),
    "FactorsRemoved": obj(
        {
            "totp": {**COUNT, "maximum": 1, "description": "Authenticator apps removed."},
            "security_keys": {**COUNT, "description": "Security keys and passkeys removed."},
            "recovery_codes": {**COUNT, "description": "Unused recovery codes removed."},
        },
        ["totp", "security_keys", "recovery_codes"],
    ),
    "Role": obj(
        {
            "id": ID,
            "name": STR,
            "builtin": {"type": "boolean"},
            "permissions": {"type": "array", "items": PERMISSION},
            "members": {"type": "integer", "minimum": 0, "description": "How many hold it."},
        },
        ["id", "name", "builtin", "permissions", "members"],
    ),
    "RoleList": list_of("Role"),
    "RoleCreate": obj({"name": string(63, 1, pattern=SLUG), "permissions": PERMISSIONS}, ["name"]),
    "RolePatch": obj({"permissions": PERMISSIONS}, ["permissions"]),
    "Settings": obj(
        {
            "session_idle_minutes": {"type": "integer"},
            "session_max_hours": {"type": "integer"},
            "password_min_length": {"type": "integer"},
            "redirect_origins": {"type": "array", "items": STR},
            "mfa_policy": MFA_POLICY,
            "mfa_grace_days": {
                **COUNT,
                "description": "Whole days left in the grace period, during which members "
                "without a second factor may still sign in without one (0: none).",
            },
            "mfa_grace_until": {
                **NULLABLE_TIME,
                "description": "When the grace period ends (null when none is running).",
            },
        },
        [
            "session_idle_minutes",
            "session_max_hours",
            "password_min_length",
            "redirect_origins",
            "mfa_policy",
            "mfa_grace_days",
            "mfa_grace_until",
        ],
    ),
    "AuditEvent": obj(
        {
            "seq": {"type": "integer"},
            "time": TIME,
            "event": STR,
            "outcome": STR,
            "actor_id": NULLABLE_STR,
            "actor_email": NULLABLE_STR,
            "org_id": NULLABLE_STR,
            "target": NULLABLE_STR,
            "ip": NULLABLE_STR,
            "user_agent": NULLABLE_STR,
            "details": {"type": "object"},
            "hash": {"type": "string", "description": "This row's link in the hash chain."},
        },
        ["seq", "time", "event", "outcome", "details", "hash"],
    ),
    "AuditList": list_of("AuditEvent"),
    "Token": TOKEN,
    "TokenList": list_of("Token"),
    "Client": CLIENT,
    "ClientList": list_of("Client"),
    "ClientCreate": obj(
        {
            "name": CLIENT_NAME,
            "redirect_uris": REDIRECT_URIS,
            "post_logout_redirect_uris": POST_LOGOUT_URIS,
            "backchannel_logout_uri": BACKCHANNEL_URI,
            "public": {
                "type": "boolean",
                "default": False,
                "description": "A client that cannot keep a secret (single-page or mobile "
                "app): no secret, PKCE only. Otherwise confidential, with a secret.",
            },
        },
        ["name", "redirect_uris"],
    ),
    "ClientCreated": {
        **CLIENT,
        "properties": {
            **CLIENT["properties"],
            "client_secret": {
                **NULLABLE_STR,
                "description": "The secret, shown this once only (null for a public client).",
            },
        },
        "required": [*CLIENT["required"], "client_secret"],
    },
    "ClientPatch": {
        **obj(
            {
                "name": CLIENT_NAME,
                "redirect_uris": REDIRECT_URIS,
                "post_logout_redirect_uris": POST_LOGOUT_URIS,
                "backchannel_logout_uri": BACKCHANNEL_URI,
            }
        ),
        "minProperties": 1,
    },
    "ClientSecret": obj(
        {
            "client_id": STR,
            "client_secret": {"type": "string", "description": "Shown this once only."},
        },
        ["client_id", "client_secret"],
    ),
    "TokenCreate": obj({"name": text(100, default="API token")}),
    "TokenCreated": {
        **TOKEN,
        "properties": {
            **TOKEN["properties"],
            "token": {"type": "string", "description": "The secret, shown this once only."},
        },
        "required": [*TOKEN["required"], "token"],
    },
}


def schemas(settings: Settings) -> dict[str, Schema]:
    """All the schemas, with the settings' bounds that this instance allows."""
    bounds = org_settings.bounds(settings)

    def bounded(name: str, description: str) -> Schema:
        limit = bounds[name]
        return {
            "type": "integer",
            "minimum": limit.low,
            "maximum": limit.high,
            "description": description,
        }

    patch = obj(
        {
            "session_idle_minutes": bounded(
                "session_idle_minutes", "Minutes without activity before a session ends."
            ),
            "session_max_hours": bounded(
                "session_max_hours", "Hours after sign-in before a session ends regardless."
            ),
            "password_min_length": bounded("password_min_length", "Shortest password allowed."),
            "redirect_origins": {
                "type": "array",
                "maxItems": org_settings.MAX_REDIRECT_ORIGINS,
                "items": text(300, 1, description="An https origin such as https://app.example."),
            },
            "mfa_policy": MFA_POLICY,
            "mfa_grace_days": {
                "type": "integer",
                "minimum": 0,
                "maximum": mfa_policy.MAX_GRACE_DAYS,
                "description": "A grace period starting now, in days (0: none, the policy applies "
                "at once). Left out, the current grace period's end stays as it is.",
            },
        }
    )
    return {**SCHEMAS, "SettingsPatch": patch}
