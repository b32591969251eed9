"""What ``bascule init`` (and ``bascule serve`` on an empty instance) does: schema, first owner."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import flask_migrate
from sqlalchemy import func, select

from idp.common import gateway_key
from idp.config import Settings
from idp.extensions import db
from idp.models import User
from idp.runtime import runtime
from idp.services import audit, orgs, users
from idp.services.audit import CLI
from idp.services.oidc import clients, keys

DEMO_ORG = "demo"
DEMO_OWNER = "admin@demo.test"


@dataclass(frozen=True)
class Owner:
    email: str
    org: str
    password: str | None  # None when the account existed already


GATEWAY_CLIENT_ID = "bascule-gateway"
GATEWAY_SECRET_FILE = "gateway-client.secret"  # noqa: S105 - a file name


def upgrade_schema() -> None:
    """Create or upgrade the schema to the newest migration, the audit chain's tip, the
    token-signing keys and the gateway's client registration."""
    flask_migrate.upgrade()
    audit.ensure_head()
    keys.ensure_keys()
    gateway_key.ensure(runtime().settings.keys_dir, runtime().keyring)
    ensure_gateway_client(runtime().settings)


def ensure_gateway_client(settings: Settings, *, renew_secret: bool = False) -> None:
    """Register the gateway as a first-party confidential client at its configured URL (a
    changed BASCULE_GATEWAY_URL is followed). Its secret is kept sealed in the keys folder,
    where the gateway (and only it) reads it."""
    secret_file = settings.keys_dir / GATEWAY_SECRET_FILE
    gateway = settings.gateway_url.rstrip("/")
    callback, signed_out = [gateway + "/_bascule/callback"], [gateway + "/"]
    backchannel = gateway + "/_bascule/backchannel-logout"
    urls: dict[str, object] = {
        "redirect_uris": callback,
        "post_logout_redirect_uris": signed_out,
        "backchannel_logout_uri": backchannel,
    }
    client = clients.get(GATEWAY_CLIENT_ID)
    secret = None
    if client is None:
        secret = clients.create_client(
            "Bascule gateway",
            callback,
            first_party=True,
            post_logout_redirect_uris=signed_out,
            backchannel_logout_uri=backchannel,
            client_id=GATEWAY_CLIENT_ID,
        ).secret
    else:
        if any(getattr(client, name) != value for name, value in urls.items()):
            for name, value in urls.items():
                setattr(client, name, value)
            audit.record("oidc.client.update", target=client.id, origin=CLI, details=urls)
        if renew_secret or not secret_file.exists():
            secret = clients.new_secret(client, actor=audit.ANONYMOUS, origin=CLI)
    if secret is not None:
        sealed = runtime().keyring.seal(secret.encode(), GATEWAY_SECRET_FILE)
        secret_file.write_text(sealed + "\n")
        secret_file.chmod(0o600)
    db.session.commit()


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
