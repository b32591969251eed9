"""Single sign-on connections of the organisation (SAML): list, add (the IdP's metadata pasted,
uploaded or fetched from a URL), settings, metadata refresh, a test sign-in, delete after a
confirmation page.

A test runs a real sign-in at the IdP from the admin's browser and shows what came back and
what a sign-in would do with it, without signing anyone in or changing any account.

Metadata is read (and, from a URL, fetched) only after ``security.manage`` was checked, so
someone without it cannot make the server parse their XML or request their URL.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from werkzeug.wrappers import Response

from idp.common.permissions import SECURITY_MANAGE
from idp.extensions import db
from idp.models import SamlConnection, User
from idp.runtime import runtime
from idp.services import authz
from idp.services.authz import Forbidden, Principal
from idp.services.errors import NotFound, ServiceError
from idp.services.saml import connections, login, metadata, provisioning
from idp.services.saml.connections import Changes
from idp.services.saml.login import Assertion
from idp.views._context import credentials_context, saml_context
from idp.views._helpers import current_user, field, login_required, server_session
from idp.views.admin._common import REFUSALS, bp, principal, render, see_other, sentence

LIST = "admin.sso_page"
SWITCHES = ("enforce_sso", "owner_break_glass", "allow_idp_initiated")
# Pasted XML stays within the form's memory cap (MAX_FORM_MEMORY_SIZE); bigger is a file.
MAX_PASTED = 256 * 1024
MAX_URL = 2000  # what the connection's column holds
MAX_LINES = 100  # domains, and group mappings
MAX_DOMAIN = 253
MAX_GROUP = 256
MAX_ROLE = 63
LINES_FIELD = (MAX_GROUP + MAX_ROLE + 8) * MAX_LINES


# --- pages and forms -----------------------------------------------------------------------


@bp.get("/sso")
@login_required
def sso_page(user: User) -> str:
    return _list_page(principal(user))


@bp.post("/sso")
@login_required
def create_connection(user: User) -> tuple[str, int] | Response:
    acting = principal(user)
    authz.require(acting, SECURITY_MANAGE)  # before any XML is parsed or any URL fetched
    typed = {
        "slug": field("slug", 64).strip(),
        "metadata_xml": field("metadata_xml", MAX_PASTED, required=False),
        "metadata_url": field("metadata_url", MAX_URL + 2, required=False).strip(),
        "domains": field("domains", (MAX_DOMAIN + 2) * MAX_LINES, required=False),
        "preset": field("preset", 32, required=False),
        **{name: _checked(name) for name in SWITCHES},
    }
    try:
        url = typed["metadata_url"] or None
        idp = connections.load_metadata(acting, _metadata_source(typed["metadata_xml"]), url)
        changes = Changes(
            domains=_domains(typed["domains"]),
            attribute_map=_preset(typed["preset"]) or None,
            enforce_sso=typed["enforce_sso"] == "on",
            owner_break_glass=typed["owner_break_glass"] == "on",
            allow_idp_initiated=typed["allow_idp_initiated"] == "on",
            metadata_url=url,
        )
        ctx, keyring = credentials_context(), runtime().keyring
        conn = connections.create(acting, ctx, keyring, typed["slug"], idp, changes)
    except REFUSALS:
        raise
    except ServiceError as exc:
        db.session.rollback()
        return _list_page(acting, error=sentence(exc), typed=typed), 400
    db.session.commit()
    flash(
        f"The connection {conn.slug} was added. Give your IdP the addresses below, then test it.",
        "notice",
    )
    return _to_connection(conn.slug)


@bp.get("/sso/<slug>")
@login_required
def connection_page(user: User, slug: str) -> str:
    acting = principal(user)
    return _connection_page(acting, connections.get_for(acting, slug))


@bp.post("/sso/<slug>")
@login_required
def update_connection(user: User, slug: str) -> tuple[str, int] | Response:
    """Save the settings form. A role the admin could not grant themselves is refused (403),
    and a role that does not exist is a 400, both explained on the form."""
    acting = principal(user)
    conn = connections.get_for(acting, slug)
    typed = _typed_settings()
    try:
        connections.update(acting, credentials_context(), conn, _settings_changes(typed))
    except (Forbidden, NotFound, ServiceError) as exc:
        db.session.rollback()
        status = 403 if isinstance(exc, Forbidden) else 400
        return _connection_page(acting, conn, error=sentence(exc), typed=typed), status
    db.session.commit()
    flash(f"The settings of {conn.slug} were saved.", "notice")
    return _to_connection(conn.slug)


@bp.post("/sso/<slug>/refresh")
@login_required
def refresh_metadata(user: User, slug: str) -> tuple[str, int] | Response:
    """New IdP metadata: pasted or uploaded here, or else fetched again from the URL."""
    acting = principal(user)
    conn = connections.get_for(acting, slug)
    pasted = field("metadata_xml", MAX_PASTED, required=False)
    ctx = credentials_context()
    try:
        source = _metadata_source(pasted)
        if source:
            idp = connections.load_metadata(acting, source, None)
            connections.replace_metadata(acting, ctx, conn, idp)
        else:
            connections.refresh(acting, ctx, conn)
    except REFUSALS:
        raise
    except ServiceError as exc:
        db.session.rollback()
        return _connection_page(acting, conn, refresh_error=sentence(exc)), 400
    db.session.commit()
    count = len(conn.idp_certificates)
    flash(
        f"The IdP's metadata was refreshed: {count} signing certificate"
        f"{'' if count == 1 else 's'}, sign-in at {conn.sso_url}.",
        "notice",
    )
    return _to_connection(conn.slug)


@bp.get("/sso/<slug>/test")
@login_required
def test_connection(user: User, slug: str) -> Response:
    """Off to the IdP for a test sign-in, whose answer ``show_test_result`` shows.

    A link, not a form: the CSP's ``form-action`` applies to every hop of a form's redirects,
    so a form could not lead on to the IdP. A GET is harmless here even from another site:
    it only remembers one more pending request in this session and leads to the IdP.
    """

    acting = principal(user)
    conn = connections.get_for(acting, slug)
    back = url_for("admin.connection_page", slug=conn.slug)
    url = login.begin(conn, saml_context(), server_session(), back, mode=login.TEST)
    return redirect(url, 303)


@bp.get("/sso/<slug>/delete")
@login_required
def confirm_delete_connection(user: User, slug: str) -> str:
    """Deletion cannot be undone (the SP key goes, and the IdP's configuration with it)."""
    acting = principal(user)
    return _connection_page(acting, connections.get_for(acting, slug), confirm_delete=True)


@bp.post("/sso/<slug>/delete")
@login_required
def delete_connection(user: User, slug: str) -> Response:
    acting = principal(user)
    conn = connections.get_for(acting, slug)
    connections.delete(acting, credentials_context(), conn)
    db.session.commit()
    flash(
        f"The connection {slug} was deleted. Its people keep their accounts, without SSO.",
        "notice",
    )
    return see_other(LIST)


def show_test_result(conn: SamlConnection, assertion: Assertion) -> str:
    """The result page of a test sign-in, for an admin of the connection's organisation."""
    user = current_user()
    acting = Principal(user, conn.org, "session") if user else None
    if acting is None:
        raise authz.Forbidden("Sign in as an administrator to test a connection.")
    authz.require(acting, SECURITY_MANAGE)
    result = provisioning.preview(conn, assertion)
    return render("sso_test.html", acting, active="sso", conn=conn, result=result)


# --- form input ----------------------------------------------------------------------------


def _checked(name: str) -> str:
    return "on" if request.form.get(name) == "on" else ""


def _typed_settings() -> dict[str, str]:
    """The settings form as typed (to show it again when refused)."""
    typed = {
        "domains": field("domains", (MAX_DOMAIN + 2) * MAX_LINES, required=False),
        "group_roles": field("group_roles", LINES_FIELD, required=False),
        "default_role": field("default_role", MAX_ROLE + 1),
        "preset": field("preset", 32, required=False),
        "metadata_url": field("metadata_url", MAX_URL + 2, required=False).strip(),
    }
    for name in connections.ATTRIBUTES:
        typed[f"attr_{name}"] = field(f"attr_{name}", MAX_GROUP + 2, required=False)
    return typed | {name: _checked(name) for name in SWITCHES}


def _settings_changes(typed: dict[str, str]) -> Changes:
    """A preset, when chosen, replaces the four attribute fields."""
    attribute_map = _preset(typed["preset"]) or {
        name: typed[f"attr_{name}"].strip() for name in connections.ATTRIBUTES
    }
    return Changes(
        domains=_domains(typed["domains"]),
        attribute_map=attribute_map,
        group_roles=_group_roles(typed["group_roles"]),
        default_role=typed["default_role"].strip(),
        enforce_sso=typed["enforce_sso"] == "on",
        owner_break_glass=typed["owner_break_glass"] == "on",
        allow_idp_initiated=typed["allow_idp_initiated"] == "on",
        metadata_url=typed["metadata_url"],  # "" removes it
    )


def _lines(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > MAX_LINES:
        raise ServiceError(f"give at most {MAX_LINES} lines")
    return lines


def _domains(text: str) -> list[str]:
    domains = _lines(text)
    too_long = next((d for d in domains if len(d) > MAX_DOMAIN), None)
    if too_long:
        raise ServiceError(f"{too_long[:40]}… is not a domain name")
    return domains


def _group_roles(text: str) -> dict[str, str]:
    """One ``group = role`` per line. A group may hold "=" (a directory DN does) and a role
    cannot, so the line splits at its last "="."""
    mapping = {}
    for line in _lines(text):
        group, sep, role = line.rpartition("=")
        group, role = group.strip(), role.strip()
        if not sep or not group or not role:
            raise ServiceError(f"write each group mapping as “group = role”, not {line[:80]!r}")
        if len(group) > MAX_GROUP or len(role) > MAX_ROLE:
            raise ServiceError(f"the group mapping {line[:80]!r}… is too long")
        mapping[group] = role
    return mapping


def _preset(name: str) -> dict[str, str]:
    if not name:
        return {}
    if name not in connections.PRESETS:
        raise ServiceError(f"there is no attribute preset {name[:32]!r}")
    return dict(connections.PRESETS[name])


def _metadata_source(pasted: str) -> str | bytes | None:
    """The metadata pasted into the form or uploaded as a file (not both), if any."""
    upload = request.files.get("metadata_file")
    data = upload.read(metadata.MAX_METADATA_BYTES + 1) if upload and upload.filename else b""
    if len(data) > metadata.MAX_METADATA_BYTES:
        raise ServiceError("the metadata file is larger than 1 MiB")
    if data and pasted.strip():
        raise ServiceError("give the metadata once: paste it or upload a file, not both")
    return data or pasted.strip() or None


# --- pages ---------------------------------------------------------------------------------


def _to_connection(slug: str) -> Response:
    return redirect(url_for("admin.connection_page", slug=slug), 303)


def _list_page(
    acting: Principal, error: str | None = None, typed: dict[str, str] | None = None
) -> str:
    issuer = runtime().settings.issuer
    found = [connections.describe(c, issuer) for c in connections.list_for(acting)]
    return render(
        "sso.html",
        acting,
        active="sso",
        connections=found,
        error=error,
        typed=typed or {"owner_break_glass": "on", "preset": "generic"},
        presets=sorted(connections.PRESETS),
    )


def _connection_page(
    acting: Principal,
    conn: SamlConnection,
    *,
    error: str | None = None,
    typed: dict[str, str] | None = None,
    refresh_error: str | None = None,
    confirm_delete: bool = False,
) -> str:
    shown = connections.describe(conn, runtime().settings.issuer)
    return render(
        "sso_connection.html",
        acting,
        active="sso",
        conn=shown,
        error=error,
        typed=typed or _as_typed(shown),
        refresh_error=refresh_error,
        confirm_delete=confirm_delete,
        roles=sorted(acting.org.roles, key=lambda r: (not r.builtin, r.name)),
        presets=sorted(connections.PRESETS),
        attributes=connections.ATTRIBUTES,
        max_lines=MAX_LINES,
    )


def _as_typed(shown: dict[str, Any]) -> dict[str, str]:
    """The connection as the settings form shows it."""
    typed = {
        "domains": "\n".join(shown["domains"]),
        "group_roles": "\n".join(f"{g} = {r}" for g, r in shown["group_roles"].items()),
        "default_role": shown["default_role"],
        "preset": "",
        "metadata_url": shown["metadata_url"] or "",
    }
    for name in connections.ATTRIBUTES:
        typed[f"attr_{name}"] = shown["attribute_map"].get(name, "")
    return typed | {name: "on" if shown[name] else "" for name in SWITCHES}
