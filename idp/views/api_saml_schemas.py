"""JSON Schemas of the admin API's SAML connection bodies (see ``api_saml``), for its OpenAPI
document; each bound here is one that ``api_saml`` enforces."""

from __future__ import annotations

from idp.services.saml import connections
from idp.views.api_schemas import (
    NULLABLE_STR,
    NULLABLE_TIME,
    PLAIN,
    ROLE_NAME,
    SLUG,
    STR,
    Schema,
    list_of,
    obj,
    string,
    text,
)

MAX_METADATA_XML = 256 * 1024  # characters: more than any one IdP's metadata
# The bodies that carry metadata may exceed the app's 1 MiB: escaped as JSON (\ud83d\ude00), a
# character takes up to 12 bytes, and a body at the schema's limits must not be refused as
# too large.
METADATA_REQUEST_BYTES = 4 * 1024 * 1024
MAX_URL = 2000
MAX_DOMAINS = 100
MAX_DOMAIN = 253
MAX_GROUP_ROLES = 100
MAX_GROUP = 256
MAX_ATTRIBUTE = 256
# Any character but the C0 and C1 controls, except tab, line feed and carriage return.
XML_TEXT = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$"

BOOL: Schema = {"type": "boolean"}
CONNECTION_SLUG = string(63, 1, pattern=SLUG, description="The connection's name in its URLs.")
METADATA_XML = string(
    MAX_METADATA_XML,
    1,
    pattern=XML_TEXT,
    description="The IdP's SAML metadata (an EntityDescriptor with an IDPSSODescriptor).",
)
METADATA_URL: Schema = {
    "type": ["string", "null"],
    "maxLength": MAX_URL,
    "pattern": PLAIN,
    "description": "An http(s) URL to fetch the IdP's metadata from (and refresh it). "
    "Null or empty: none.",
}
SETTINGS: dict[str, Schema] = {
    "domains": {
        "type": "array",
        "maxItems": MAX_DOMAINS,
        "items": text(MAX_DOMAIN, 1),
        "description": "Email domains this connection speaks for (replaced whole). A domain "
        "belongs to one connection on the instance.",
    },
    "preset": {
        "type": "string",
        "enum": sorted(connections.PRESETS),
        "description": "Attribute names as this IdP sends them by default; attribute_map, if "
        "given too, changes some of them.",
    },
    "attribute_map": {
        **obj({name: text(MAX_ATTRIBUTE, 1) for name in connections.ATTRIBUTES}),
        "minProperties": 1,
        "description": "Our attribute -> the IdP's attribute name. Replaces the whole map "
        "(or, with preset, the preset's names it gives); email defaults to 'email'.",
    },
    "group_roles": {
        "type": "object",
        "maxProperties": MAX_GROUP_ROLES,
        "propertyNames": text(MAX_GROUP, 1),
        "additionalProperties": ROLE_NAME,
        "description": "IdP group -> role (replaced whole). Only roles whose permissions you "
        "hold yourself.",
    },
    "default_role": {**ROLE_NAME, "description": "The role of people in no mapped group."},
    "enforce_sso": {**BOOL, "description": "Refuse password sign-in on the domains."},
    "owner_break_glass": {
        **BOOL,
        "description": "Owners may still sign in with a password while SSO is enforced (audited).",
    },
    "allow_idp_initiated": {**BOOL, "description": "Accept sign-ins started at the IdP."},
    "metadata_url": METADATA_URL,
}

CONNECTION = obj(
    {
        "slug": STR,
        "org": STR,
        "idp_entity_id": STR,
        "sso_url": STR,
        "slo_url": NULLABLE_STR,
        "idp_certificates": {
            "type": "integer",
            "minimum": 0,
            "description": "How many signing certificates of the IdP are trusted.",
        },
        "idp_wants_signed_requests": BOOL,
        "metadata_url": NULLABLE_STR,
        "metadata_refreshed_at": NULLABLE_TIME,
        "domains": {"type": "array", "items": STR},
        "attribute_map": {"type": "object", "additionalProperties": STR},
        "group_roles": {"type": "object", "additionalProperties": STR},
        "default_role": STR,
        "enforce_sso": BOOL,
        "owner_break_glass": BOOL,
        "allow_idp_initiated": BOOL,
        "sp_entity_id": {**STR, "description": "Our entity ID (the audience): give it the IdP."},
        "sp_metadata_url": {**STR, "description": "Our SP metadata, for the IdP."},
        "acs_url": {**STR, "description": "Where the IdP posts its answers."},
        "sls_url": {**STR, "description": "Our single logout address."},
        "login_url": {**STR, "description": "Starts a sign-in through this connection."},
    },
    [
        "slug", "org", "idp_entity_id", "sso_url", "slo_url", "idp_certificates",
        "idp_wants_signed_requests", "metadata_url", "metadata_refreshed_at", "domains",
        "attribute_map", "group_roles", "default_role", "enforce_sso", "owner_break_glass",
        "allow_idp_initiated", "sp_entity_id", "sp_metadata_url", "acs_url", "sls_url",
        "login_url",
    ],
)  # fmt: skip

SAML_SCHEMAS: dict[str, Schema] = {
    "SamlConnection": CONNECTION,
    "SamlConnectionList": list_of("SamlConnection"),
    "SamlConnectionCreate": obj(
        {"slug": CONNECTION_SLUG, "metadata_xml": METADATA_XML, **SETTINGS}, ["slug"]
    ),
    "SamlConnectionPatch": {**obj(SETTINGS), "minProperties": 1},
    "SamlMetadataRefresh": obj({"metadata_xml": METADATA_XML}),
}
