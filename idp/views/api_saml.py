"""SAML single sign-on connections in the admin API, under /api/v1/saml/connections.

The routes are added to the API blueprint (``api.bp``), so they share its bearer-token
authentication, CSRF exemption, no-store answers and problem documents. The services check
``security.manage`` and audit; here the body's shape is checked (each field's type and size,
as ``api_saml_schemas`` describes it), and the permission is checked before any metadata is
parsed or fetched, so a token without it cannot make the server read its XML or its URL.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from flask import Response, jsonify, request

from idp.common.permissions import SECURITY_MANAGE
from idp.extensions import db
from idp.models import SamlConnection
from idp.runtime import runtime
from idp.services import authz
from idp.services.authz import Principal
from idp.services.saml import connections
from idp.services.saml.connections import Changes
from idp.views import api_input as inp
from idp.views._context import credentials_context
from idp.views.api import body_reference, bp, token_required
from idp.views.api_saml_schemas import (
    MAX_ATTRIBUTE,
    MAX_DOMAIN,
    MAX_DOMAINS,
    MAX_GROUP,
    MAX_GROUP_ROLES,
    MAX_METADATA_XML,
    MAX_URL,
    METADATA_REQUEST_BYTES,
)

PATH = "/saml/connections"
SETTINGS = {
    "domains",
    "preset",
    "attribute_map",
    "group_roles",
    "default_role",
    "enforce_sso",
    "owner_break_glass",
    "allow_idp_initiated",
    "metadata_url",
}
SWITCHES = ("enforce_sso", "owner_break_glass", "allow_idp_initiated")
# What XML may hold: any character but the C0/C1 controls other than tab, line feed and return.
XML_WHITESPACE = {"\t", "\n", "\r"}


@bp.get(PATH)
@token_required
def list_saml_connections(principal: Principal) -> Response:
    page, per_page = inp.page_args(inp.query({"page", "per_page"}))
    found = connections.list_for(principal)
    start = (page - 1) * per_page
    items = [_describe(c) for c in found[start : start + per_page]]
    return jsonify(items=items, total=len(found), page=page, per_page=per_page)


@bp.post(PATH)
@token_required
def create_saml_connection(principal: Principal) -> tuple[Response, int]:
    """A new connection from the IdP's metadata: ``metadata_xml`` if given, else fetched from
    ``metadata_url`` (kept either way, for refreshing)."""
    authz.require(principal, SECURITY_MANAGE)
    request.max_content_length = METADATA_REQUEST_BYTES  # once authorised, not before
    body = inp.json_body({"slug", "metadata_xml", *SETTINGS}, required={"slug"})
    slug = inp.text(body["slug"], "slug", 63, min_length=1)
    xml = _xml(body["metadata_xml"]) if "metadata_xml" in body else None
    changes = _changes(body)
    with body_reference():
        idp = connections.load_metadata(principal, xml, changes.metadata_url or None)
        conn = connections.create(
            principal, credentials_context(), runtime().keyring, slug, idp, changes
        )
    db.session.commit()
    return jsonify(_describe(conn)), 201


@bp.get(f"{PATH}/<slug>")
@token_required
def get_saml_connection(principal: Principal, slug: str) -> Response:
    return jsonify(_describe(connections.get_for(principal, slug)))


@bp.patch(f"{PATH}/<slug>")
@token_required
def update_saml_connection(principal: Principal, slug: str) -> Response:
    """Change some settings; each list or mapping given replaces the current one whole."""
    conn = connections.get_for(principal, slug)
    body = inp.json_body(SETTINGS)
    if not body:
        inp.bad(f"Give at least one of: {', '.join(sorted(SETTINGS))}.")
    changes = _changes(body)
    with body_reference():
        connections.update(principal, credentials_context(), conn, changes)
    db.session.commit()
    return jsonify(_describe(conn))


@bp.delete(f"{PATH}/<slug>")
@token_required
def delete_saml_connection(principal: Principal, slug: str) -> tuple[str, int]:
    conn = connections.get_for(principal, slug)
    connections.delete(principal, credentials_context(), conn)
    db.session.commit()
    return "", 204


@bp.post(f"{PATH}/<slug>/refresh")
@token_required
def refresh_saml_metadata(principal: Principal, slug: str) -> Response:
    """New IdP metadata: ``metadata_xml`` in the body, or else fetched again from the URL."""
    conn = connections.get_for(principal, slug)
    request.max_content_length = METADATA_REQUEST_BYTES  # once authorised, not before
    has_body = bool(request.content_length) or "Content-Type" in request.headers
    body = inp.json_body({"metadata_xml"}) if has_body else {}
    ctx = credentials_context()
    if "metadata_xml" in body:
        idp = connections.load_metadata(principal, _xml(body["metadata_xml"]), None)
        connections.replace_metadata(principal, ctx, conn, idp)
    else:
        connections.refresh(principal, ctx, conn)
    db.session.commit()
    return jsonify(_describe(conn))


# --- input ---------------------------------------------------------------------------------


def _changes(body: dict[str, Any]) -> Changes:
    """The settings in ``body``; those it leaves out stay as they are (None)."""
    switches = {name: inp.boolean(body[name], name) for name in SWITCHES if name in body}
    return Changes(
        domains=_list(body["domains"], "domains", MAX_DOMAINS, MAX_DOMAIN)
        if "domains" in body
        else None,
        attribute_map=_attribute_map(body),
        group_roles=_group_roles(body["group_roles"]) if "group_roles" in body else None,
        default_role=(
            inp.text(body["default_role"], "default_role", 63, min_length=1)
            if "default_role" in body
            else None
        ),
        metadata_url=_url(body["metadata_url"]) if "metadata_url" in body else None,
        **switches,
    )


def _list(value: Any, name: str, max_items: int, max_length: int) -> list[str]:
    items = inp.text_list(value, name, max_items, max_length)
    if any(not item for item in items):
        inp.bad(f"each entry of {name} must be 1 to {max_length} characters long.")
    return items


def _attribute_map(body: dict[str, Any]) -> dict[str, str] | None:
    """``preset``'s attribute names, with ``attribute_map``'s over them; None: unchanged."""
    mapping: dict[str, str] = {}
    if "preset" in body:
        preset = inp.text(body["preset"], "preset", 32)
        if preset not in connections.PRESETS:
            inp.bad(f"preset must be one of: {', '.join(sorted(connections.PRESETS))}.")
        mapping.update(connections.PRESETS[preset])
    if "attribute_map" in body:
        given = _object(body["attribute_map"], "attribute_map", len(connections.ATTRIBUTES))
        unknown = sorted(set(given) - set(connections.ATTRIBUTES))
        if unknown:
            shown = ", ".join(repr(k[:40]) for k in unknown)
            known = ", ".join(connections.ATTRIBUTES)
            inp.bad(f"attribute_map has unknown key(s) {shown}: use {known}.")
        for key, value in given.items():
            mapping[key] = inp.text(value, f"attribute_map.{key}", MAX_ATTRIBUTE, min_length=1)
    return mapping or None


def _group_roles(value: Any) -> dict[str, str]:
    given = _object(value, "group_roles", MAX_GROUP_ROLES, allow_empty=True)
    return {
        inp.text(group, "each group in group_roles", MAX_GROUP, min_length=1): inp.text(
            role, "each role in group_roles", 63, min_length=1
        )
        for group, role in given.items()
    }


def _object(value: Any, name: str, max_items: int, allow_empty: bool = False) -> dict[str, Any]:
    if not isinstance(value, dict):
        inp.bad(f"{name} must be a JSON object.")
    if len(value) > max_items or not (value or allow_empty):
        low = 0 if allow_empty else 1
        inp.bad(f"{name} must have {low} to {max_items} entries.")
    return value


def _url(value: Any) -> str:
    """The metadata URL, or "" for none (null or an empty string)."""
    return "" if value is None else inp.text(value, "metadata_url", MAX_URL)


def _xml(value: Any) -> str:
    """Metadata XML: like ``api_input.text``, but line breaks and tabs are part of it."""
    if not isinstance(value, str):
        inp.bad("metadata_xml must be a string.")
    if not 1 <= len(value) <= MAX_METADATA_XML:
        inp.bad(f"metadata_xml must be 1 to {MAX_METADATA_XML} characters long.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape
        inp.bad("metadata_xml contains characters that are not valid Unicode.")
    if any(unicodedata.category(c) == "Cc" and c not in XML_WHITESPACE for c in value):
        inp.bad("metadata_xml must not contain control characters other than line breaks and tabs.")
    return value


def _describe(conn: SamlConnection) -> dict[str, Any]:
    return connections.describe(conn, runtime().settings.issuer)
