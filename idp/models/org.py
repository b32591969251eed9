"""Organisations, their roles and permissions, and who belongs with which role."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.extensions import db
from idp.models._types import UtcDateTime, new_id, utcnow

if TYPE_CHECKING:
    from idp.models.user import User


class Organisation(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Security settings an admin may tighten within the instance's bounds (None: instance default).
    session_idle_minutes: Mapped[int | None] = mapped_column(default=None)
    session_max_hours: Mapped[int | None] = mapped_column(default=None)
    password_min_length: Mapped[int | None] = mapped_column(default=None)
    redirect_origins: Mapped[list[str]] = mapped_column(
        JSON, default=list, server_default=text("'[]'")
    )
    # Who must use a second factor: "off", "admins" (holders of an administrative
    # permission) or "everyone"; until ``mfa_grace_until`` those without one may still enrol later.
    mfa_policy: Mapped[str] = mapped_column(String(16), default="off", server_default="off")
    mfa_grace_until: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)

    roles: Mapped[list[Role]] = relationship(back_populates="org", cascade="all, delete-orphan")


class Role(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "roles"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    builtin: Mapped[bool] = mapped_column(default=False)

    org: Mapped[Organisation] = relationship(back_populates="roles")
    grants: Mapped[list[RolePermission]] = relationship(
        back_populates="role", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def permissions(self) -> frozenset[str]:
        return frozenset(g.permission for g in self.grants)


class RolePermission(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "role_permissions"

    role_id: Mapped[int] = mapped_column(
        ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True
    )
    permission: Mapped[str] = mapped_column(String(63), primary_key=True)

    role: Mapped[Role] = relationship(back_populates="grants")


class Membership(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "org_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    user: Mapped[User] = relationship(back_populates="memberships")
    org: Mapped[Organisation] = relationship(lazy="joined")
    role: Mapped[Role] = relationship(lazy="joined")
