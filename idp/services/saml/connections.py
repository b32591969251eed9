"""An organisation's SAML connections: created, changed, refreshed and removed, each checked
by ``authz`` (``security.manage``) and audited.

The CLI, the admin console and the admin API all come here. A connection may only ever speak
for addresses on its own domains, and a domain belongs to one connection on the instance, so
one organisation's IdP cannot sign people in under another organisation's addresses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from idp.common.permissions import SECURITY_MANAGE
from idp.common.sealing import Keyring
from idp.extensions import db
from idp.models import SamlConnection
from idp.services import audit, authz, orgs
from idp.services.authz import Principal
from idp.services.credentials import Context
from idp.services.errors import NotFound, ServiceError
from idp.services.saml import metadata, sp
from idp.services.saml.metadata import IdpDescriptor

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
ATTRIBUTES = ("email", "given_name", "family_name", "groups")
# Where common IdPs put each attribute by default (what their setup guides in docs/saml.md do).
_CLAIMS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims"
PRESETS: dict[str, dict[str, str]] = {
    "generic": {
        "email": "email",
        "given_name": "givenName",
        "family_name": "sn",
        "groups": "groups",
    },
    "okta": {
        "email": "email",
        "given_name": "firstName",
        "family_name": "lastName",
        "groups": "groups",
    },
    "google": {
        "email": "email",
        "given_name": "firstName",
        "family_name": "lastName",
        "groups": "groups",
    },
    "entra": {
        "email": f"{_CLAIMS}/emailaddress",
        "given_name": f"{_CLAIMS}/givenname",
        "family_name": f"{_CLAIMS}/surname",
        "groups": "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
    },
    "x500": {
        "email": "urn:oid:0.9.2342.19200300.100.1.3",
        "given_name": "urn:oid:2.5.4.42",
        "family_name": "urn:oid:2.5.4.4",
        "groups": "urn:oid:1.3.6.1.4.1.5923.1.5.1.1",
    },
}


@dataclass(frozen=True)
class Changes:
    """What an admin may change on a connection; None leaves a field as it is."""

    domains: list[str] | None = None
    attribute_map: dict[str, str] | None = None
    group_roles: dict[str, str] | None = None
    default_role: str | None = None
    enforce_sso: bool | None = None
    owner_break_glass: bool | None = None
    allow_idp_initiated: bool | None = None
    metadata_url: str | None = None


def find(slug: str) -> SamlConnection | None:
    return db.session.scalar(select(SamlConnection).where(SamlConnection.slug == slug))


def get(slug: str) -> SamlConnection:
    conn = find(slug) if _SLUG.match(slug or "") else None
    if conn is None:
        raise NotFound(f"no SSO connection {slug!r}")
    return conn


def get_for(principal: Principal, slug: str) -> SamlConnection:
    """The principal's organisation's connection ``slug`` (another organisation's: not found)."""
    authz.require(principal, SECURITY_MANAGE)
    conn = find(slug) if _SLUG.match(slug or "") else None
    if conn is None or conn.org_id != principal.org.id:
        raise NotFound(f"no SSO connection {slug!r} in {principal.org.slug!r}")
    return conn


def list_for(principal: Principal) -> list[SamlConnection]:
    authz.require(principal, SECURITY_MANAGE)
    query = select(SamlConnection).where(SamlConnection.org_id == principal.org.id)
    return list(db.session.scalars(query.order_by(SamlConnection.slug)).all())


def for_domain(domain: str) -> SamlConnection | None:
    """The connection that speaks for addresses on ``domain``, if any."""
    domain = domain.strip().lower()
    return next((c for c in all_connections() if domain in c.domains), None)


def load_metadata(principal: Principal, xml: str | bytes | None, url: str | None) -> IdpDescriptor:
    """The IdP described by pasted/uploaded ``xml``, or else fetched from ``url``.

    Only the operator (the CLI) may fetch from loopback or private addresses.
    """
    authz.require(principal, SECURITY_MANAGE)
    if xml:
        return metadata.parse(xml)
    if url:
        return metadata.parse(metadata.fetch(url, internal_allowed=principal.via == "cli"))
    raise ServiceError("give the IdP's metadata: a file, pasted XML or a URL")


def create(
    principal: Principal,
    ctx: Context,
    keyring: Keyring,
    slug: str,
    idp: IdpDescriptor,
    changes: Changes,
) -> SamlConnection:
    """A new connection for the principal's organisation, with its own SP key pair."""
    authz.require(principal, SECURITY_MANAGE)
    if not _SLUG.match(slug or ""):
        raise ServiceError(f"{slug!r} is not a valid slug: use lower-case letters, digits, -")
    if find(slug) is not None:
        raise ServiceError(f"an SSO connection {slug!r} already exists")
    private_pem, cert_pem = sp.new_key_pair(f"Bascule SP {slug}")
    conn = SamlConnection(
        org_id=principal.org.id,
        org=principal.org,
        slug=slug,
        sealed_sp_key=keyring.seal(private_pem, sp.SP_KEY_PURPOSE),
        sp_certificate=cert_pem,
        attribute_map=dict(PRESETS["generic"]),
        group_roles={},
        domains=[],
        default_role="member",
    )
    _apply_idp(conn, idp)
    _apply(principal, conn, changes)
    db.session.add(conn)
    db.session.flush()
    _record("saml.connection_create", principal, ctx, conn, describe(conn, ctx.settings.issuer))
    return conn


def update(principal: Principal, ctx: Context, conn: SamlConnection, changes: Changes) -> None:
    authz.require(principal, SECURITY_MANAGE)
    before = describe(conn, ctx.settings.issuer)
    _apply(principal, conn, changes)
    after = describe(conn, ctx.settings.issuer)
    changed = {k: {"before": before[k], "after": v} for k, v in after.items() if before[k] != v}
    _record("saml.connection_update", principal, ctx, conn, {"changed": changed})


def replace_metadata(
    principal: Principal, ctx: Context, conn: SamlConnection, idp: IdpDescriptor
) -> None:
    """Take new IdP metadata (a certificate rollover, a moved endpoint); audited."""
    authz.require(principal, SECURITY_MANAGE)
    before = conn.idp_certificates
    _apply_idp(conn, idp)
    _record(
        "saml.metadata_refresh",
        principal,
        ctx,
        conn,
        {
            "entity_id": idp.entity_id,
            "certificates_before": len(before),
            "certificates_after": len(idp.certificates),
            "certificates_changed": before != idp.certificates,
        },
    )


def refresh(principal: Principal, ctx: Context, conn: SamlConnection) -> None:
    """Fetch the metadata again from the connection's URL."""
    if not conn.metadata_url:
        raise ServiceError(f"{conn.slug!r} has no metadata URL to refresh from")
    replace_metadata(principal, ctx, conn, load_metadata(principal, None, conn.metadata_url))


def delete(principal: Principal, ctx: Context, conn: SamlConnection) -> None:
    authz.require(principal, SECURITY_MANAGE)
    details = {"domains": conn.domains}
    db.session.delete(conn)
    db.session.flush()
    _record("saml.connection_delete", principal, ctx, conn, details)  # commits both


def describe(conn: SamlConnection, issuer: str) -> dict[str, Any]:
    """A connection as the CLI's ``--json``, the console and the admin API show it."""
    at = sp.urls(issuer, conn.slug)
    return {
        "slug": conn.slug,
        "org": conn.org.slug,
        "idp_entity_id": conn.idp_entity_id,
        "sso_url": conn.sso_url,
        "slo_url": conn.slo_url,
        "idp_certificates": len(conn.idp_certificates),
        "idp_wants_signed_requests": conn.idp_wants_signed_requests,
        "metadata_url": conn.metadata_url,
        "metadata_refreshed_at": (
            conn.metadata_refreshed_at.isoformat() if conn.metadata_refreshed_at else None
        ),
        "domains": list(conn.domains),
        "attribute_map": dict(conn.attribute_map),
        "group_roles": dict(conn.group_roles),
        "default_role": conn.default_role,
        "enforce_sso": conn.enforce_sso,
        "owner_break_glass": conn.owner_break_glass,
        "allow_idp_initiated": conn.allow_idp_initiated,
        "sp_entity_id": at["entity_id"],
        "sp_metadata_url": at["metadata"],
        "acs_url": at["acs"],
        "sls_url": at["sls"],
        "login_url": at["login"],
    }


def _apply_idp(conn: SamlConnection, idp: IdpDescriptor) -> None:
    conn.idp_entity_id = idp.entity_id
    conn.sso_url = idp.sso_url
    conn.slo_url = idp.slo_url
    conn.idp_certificates = list(idp.certificates)
    conn.idp_wants_signed_requests = idp.wants_signed_requests
    conn.metadata_refreshed_at = datetime.now(UTC)


def _apply(principal: Principal, conn: SamlConnection, changes: Changes) -> None:
    """Check every change first, then write them all: a refused change leaves nothing half-set."""
    domains = _domains(changes.domains, conn) if changes.domains is not None else None
    attribute_map = _attribute_map(changes.attribute_map) if changes.attribute_map else None
    if changes.group_roles is not None:
        for role_name in changes.group_roles.values():
            _grantable_role(principal, role_name)
    if changes.default_role is not None:
        _grantable_role(principal, changes.default_role)
    if changes.metadata_url:
        metadata.check_url(changes.metadata_url)
    enforce = conn.enforce_sso if changes.enforce_sso is None else changes.enforce_sso
    if enforce and not (conn.domains if domains is None else domains):
        raise ServiceError("enforcing SSO needs at least one domain")
    if domains is not None:
        conn.domains = domains
    if attribute_map is not None:
        conn.attribute_map = attribute_map
    if changes.group_roles is not None:
        conn.group_roles = {str(g)[:256]: r for g, r in changes.group_roles.items()}
    if changes.default_role is not None:
        conn.default_role = changes.default_role
    for flag in ("enforce_sso", "owner_break_glass", "allow_idp_initiated"):
        value = getattr(changes, flag)
        if value is not None:
            setattr(conn, flag, bool(value))
    if changes.metadata_url is not None:
        conn.metadata_url = changes.metadata_url or None


def _domains(values: list[str], conn: SamlConnection) -> list[str]:
    domains = sorted({d.strip().lower().rstrip(".") for d in values if d.strip()})
    for domain in domains:
        if not _DOMAIN.match(domain):
            raise ServiceError(f"{domain!r} is not a domain name")
        owner = for_domain(domain)
        if owner is not None and owner is not conn:
            raise ServiceError(f"{domain} already belongs to another SSO connection")
    return domains


def _attribute_map(values: dict[str, str]) -> dict[str, str]:
    unknown = set(values) - set(ATTRIBUTES)
    if unknown:
        raise ServiceError(
            f"unknown attribute(s) {', '.join(sorted(unknown))}: use {', '.join(ATTRIBUTES)}"
        )
    cleaned = {k: v.strip()[:256] for k, v in values.items() if v and v.strip()}
    if "email" not in cleaned:
        cleaned["email"] = PRESETS["generic"]["email"]
    return cleaned


def _grantable_role(principal: Principal, role_name: str) -> None:
    """A mapping hands a role out on each sign-in: only a role the admin could grant."""
    role = orgs.get_role(principal.org, role_name)
    authz.require_grantable(principal, role.permissions)


def all_connections() -> list[SamlConnection]:
    """Every connection on the instance (the operator's view)."""
    return list(db.session.scalars(select(SamlConnection).order_by(SamlConnection.slug)).all())


def _record(
    event: str, principal: Principal, ctx: Context, conn: SamlConnection, details: dict[str, Any]
) -> None:
    audit.record(
        event,
        actor=principal.actor,
        org_id=conn.org_id,
        target=conn.slug,
        origin=ctx.origin,
        details=details,
        now=ctx.now,
    )
