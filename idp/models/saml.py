"""SAML single sign-on: an organisation's connections to its IdP, and who came through them.

The SP's private key is sealed (AES-256-GCM); the IdP's certificates are public data.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.extensions import db
from idp.models._types import UtcDateTime, utcnow
from idp.models.org import Organisation


class SamlConnection(db.Model):  # type: ignore[name-defined,misc]
    """One organisation's SAML IdP, and how what it asserts becomes an account and a role."""

    __tablename__ = "saml_connections"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[str] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    # The IdP, as its metadata describes it (refreshed from ``metadata_url`` on demand).
    idp_entity_id: Mapped[str] = mapped_column(String(1024))
    sso_url: Mapped[str] = mapped_column(String(2000))
    slo_url: Mapped[str | None] = mapped_column(String(2000), default=None)
    # Base64 DER certificates: more than one while the IdP rolls its key over.
    idp_certificates: Mapped[list[str]] = mapped_column(JSON, default=list)
    idp_wants_signed_requests: Mapped[bool] = mapped_column(Boolean, default=False)
    metadata_url: Mapped[str | None] = mapped_column(String(2000), default=None)
    metadata_refreshed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    # Only addresses on these domains may sign in through this connection (lower case).
    domains: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Our attribute (email, given_name, family_name, groups) -> the IdP's attribute name.
    attribute_map: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # IdP group -> role name in the organisation; members in none of them get ``default_role``.
    group_roles: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    default_role: Mapped[str] = mapped_column(String(63), default="member")
    enforce_sso: Mapped[bool] = mapped_column(Boolean, default=False)
    # Owners may still sign in with a password while SSO is enforced (each use audited).
    owner_break_glass: Mapped[bool] = mapped_column(Boolean, default=True)
    allow_idp_initiated: Mapped[bool] = mapped_column(Boolean, default=False)
    # The SP's own key pair, for signed AuthnRequests and encrypted assertions.
    sealed_sp_key: Mapped[str] = mapped_column(Text)
    sp_certificate: Mapped[str] = mapped_column(Text)  # PEM
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    org: Mapped[Organisation] = relationship(lazy="joined")


class SamlIdentity(db.Model):  # type: ignore[name-defined,misc]
    """The account an IdP's NameID signs in to: it stays linked if the address changes."""

    __tablename__ = "saml_identities"
    __table_args__ = (UniqueConstraint("connection_id", "name_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(
        ForeignKey("saml_connections.id", ondelete="CASCADE")
    )
    name_id: Mapped[str] = mapped_column(String(512))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
