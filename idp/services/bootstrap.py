"""What ``bascule init`` (and ``bascule serve`` on an empty instance) does: schema, first owner."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import flask_migrate
from sqlalchemy import func, select

from idp.config import Settings
from idp.extensions import db
from idp.models import User
from idp.services import audit, orgs, users
from idp.services.audit import CLI

DEMO_ORG = "demo"
DEMO_OWNER = "admin@demo.test"


@dataclass(frozen=True)
class Owner:
    email: str
    org: str
    password: str | None  # None when the account existed already


def upgrade_schema() -> None:
    """Create or upgrade the schema to the newest migration, then the audit chain's tip."""
    flask_migrate.upgrade()
    audit.ensure_head()


def is_empty() -> bool:
    return (db.session.scalar(select(func.count()).select_from(User)) or 0) == 0


def ensure_owner(settings: Settings, email: str, org_slug: str, org_name: str = "") -> Owner:
    """Create the organisation and its owner unless they exist; print-once password."""
    org = orgs.find(org_slug)
    if org is None:
        org = orgs.create(org_slug, org_name or org_slug.replace("-", " ").title())
        audit.record("org.create", target=org_slug, org_id=org.id, origin=CLI)
    user = users.find_by_email(email)
    password = None
    if user is None:
        user = users.create_user(email)
        password = generate_password()
        users.set_password(user, password, rounds=settings.bcrypt_rounds)
    if orgs.membership(user, org) is None:
        orgs.add_member(user, org, orgs.get_role(org, "owner"))
        audit.record(
            "member.add", target=user.email, org_id=org.id, origin=CLI, details={"role": "owner"}
        )
    db.session.commit()
    return Owner(user.email, org.slug, password)


def generate_password() -> str:
    """A random password shown once: 4 groups of 6 letters and digits, over 128 bits."""
    alphabet = "abcdefghijkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXY34679"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(6)) for _ in range(4))
