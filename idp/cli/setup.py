"""``bascule init``: schema, keys and (optionally) the first owner."""

from __future__ import annotations

import click

from idp.cli._common import app_context, emit, friendly_errors, json_option, settings
from idp.common.sealing import ensure_data_key
from idp.config import Settings
from idp.services import bootstrap
from idp.services.bootstrap import Owner


def initialise(current: Settings, admin_email: str | None, org: str | None) -> dict[str, object]:
    """Create keys and schema; create the owner if asked. Safe to run again."""
    current.instance_dir.mkdir(parents=True, exist_ok=True)
    created_key = ensure_data_key(current.keys_dir, current.data_key)
    with app_context(current):
        bootstrap.upgrade_schema()
        owner = bootstrap.ensure_owner(current, admin_email, org) if admin_email and org else None
    return {"data_key_created": created_key, "owner": owner}


def describe_owner(owner: Owner, issuer: str) -> str:
    if owner.password is None:
        return f"{owner.email} already exists and is an owner of {owner.org!r}."
    return (
        f"Owner of {owner.org!r}: {owner.email}\n"
        f"Password (shown once, change it on /account): {owner.password}\n"
        f"Sign in at {issuer}/login"
    )


@click.command()
@click.option("--admin-email", help="Create this owner (with a one-time printed password).")
@click.option("--org", "org_slug", help="The organisation slug for the owner.")
@json_option
@friendly_errors
def init(admin_email: str | None, org_slug: str | None, as_json: bool) -> None:
    """Create or upgrade the schema and keys; optionally the first owner. Idempotent."""
    if bool(admin_email) != bool(org_slug):
        raise click.UsageError("--admin-email and --org go together")
    current = settings()
    result = initialise(current, admin_email, org_slug)
    owner = result["owner"]
    lines = ["Schema is up to date.", "Created a data key." if result["data_key_created"] else ""]
    if isinstance(owner, Owner):
        lines.append(describe_owner(owner, current.issuer))
    data = {
        "schema": "up to date",
        "data_key_created": result["data_key_created"],
        "owner": None
        if not isinstance(owner, Owner)
        else {
            "email": owner.email,
            "org": owner.org,
            "password": owner.password,
            "login_url": f"{current.issuer}/login",
        },
    }
    emit(data, as_json, "\n".join(line for line in lines if line))


COMMANDS = [init]
