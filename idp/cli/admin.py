"""Organisations, users, roles and sessions from the command line (the operator acts as root)."""

from __future__ import annotations

import sys

import click

from idp.cli._common import app_context, emit, friendly_errors, json_option
from idp.common import permissions
from idp.extensions import db
from idp.runtime import runtime
from idp.services import audit, credentials, orgs, sessions, users
from idp.services.audit import CLI
from idp.services.errors import ServiceError


@click.group("orgs")
def orgs_group() -> None:
    """Organisations."""


@orgs_group.command("create")
@click.argument("slug")
@click.option("--name", default="", help="Display name (defaults to the slug).")
@json_option
@friendly_errors
def orgs_create(slug: str, name: str, as_json: bool) -> None:
    """Create an organisation with the built-in roles."""
    with app_context():
        org = orgs.create(slug, name)
        audit.record("org.create", target=slug, org_id=org.id, origin=CLI)
        emit({"id": org.id, "slug": org.slug, "name": org.name}, as_json, f"Created {slug!r}.")


@click.group("users")
def users_group() -> None:
    """Users and their roles."""


@users_group.command("create")
@click.argument("email")
@click.option("--org", "org_slug", required=True)
@click.option("--role", default="member", show_default=True)
@click.option("--name", default="")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@json_option
@friendly_errors
def users_create(
    email: str, org_slug: str, role: str, name: str, password_stdin: bool, as_json: bool
) -> None:
    """Create a user in an organisation; without a password, send an invitation link."""
    with app_context():
        rt = runtime()
        org = orgs.get(org_slug)
        org_role = orgs.get_role(org, role)
        user = users.create_user(email, name)
        orgs.add_member(user, org, org_role)
        data: dict[str, object] = {"id": user.id, "email": user.email, "org": org.slug}
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
            violation = users.check_new_password(user, password, rt.settings.password_min_length)
            if violation:
                raise ServiceError(f"password refused: {violation.reason}")
            users.set_password(user, password, rounds=rt.settings.bcrypt_rounds)
            audit.record(
                "user.create", target=user.email, org_id=org.id, origin=CLI, details={"role": role}
            )
            text = f"Created {user.email} ({role} in {org.slug!r})."
        else:
            audit.record(
                "user.create", target=user.email, org_id=org.id, origin=CLI, details={"role": role}
            )
            ctx = credentials.Context(rt.settings, rt.store, rt.mailer, CLI, rt.clock())
            link = credentials.invite(ctx, user, org, invited_by=audit.ANONYMOUS)
            data["invitation_link"] = link
            text = f"Created {user.email} ({role} in {org.slug!r}).\nInvitation link: {link}"
        emit(data, as_json, text)


@users_group.command("set-role")
@click.argument("email")
@click.argument("role")
@click.option("--org", "org_slug", required=True)
@json_option
@friendly_errors
def users_set_role(email: str, role: str, org_slug: str, as_json: bool) -> None:
    """Give a member another role in an organisation."""
    with app_context():
        org = orgs.get(org_slug)
        user = users.get_by_email(email)
        member = orgs.membership(user, org)
        if member is None:
            raise ServiceError(f"{user.email} is not a member of {org.slug!r}")
        old = orgs.set_member_role(member, orgs.get_role(org, role))
        audit.record(
            "member.role_change",
            target=user.email,
            org_id=org.id,
            origin=CLI,
            details={"before": old, "after": role},
        )
        emit(
            {"email": user.email, "org": org.slug, "role": role, "previous_role": old},
            as_json,
            f"{user.email} is now {role} in {org.slug!r} (was {old}).",
        )


def _set_active(email: str, active: bool, as_json: bool) -> None:
    with app_context():
        user = users.get_by_email(email)
        ended = users.set_active(
            user, active, store=runtime().store, actor=audit.ANONYMOUS, origin=CLI
        )
        state = "enabled" if active else f"disabled ({ended} session(s) ended)"
        emit(
            {"email": user.email, "active": active, "sessions_revoked": ended},
            as_json,
            f"{user.email} {state}.",
        )


@users_group.command("disable")
@click.argument("email")
@json_option
@friendly_errors
def users_disable(email: str, as_json: bool) -> None:
    """Disable an account and end all of its sessions at once."""
    _set_active(email, False, as_json)


@users_group.command("enable")
@click.argument("email")
@json_option
@friendly_errors
def users_enable(email: str, as_json: bool) -> None:
    """Re-enable a disabled account."""
    _set_active(email, True, as_json)


@click.group("sessions")
def sessions_group() -> None:
    """Sessions."""


@sessions_group.command("revoke")
@click.option("--user", "email", required=True)
@json_option
@friendly_errors
def sessions_revoke(email: str, as_json: bool) -> None:
    """End every session of a user."""
    with app_context():
        user = users.get_by_email(email)
        ended = sessions.revoke_all(runtime().store, user.id)
        audit.record("session.revoke_all", target=user.email, origin=CLI, details={"count": ended})
        emit(
            {"email": user.email, "sessions_revoked": ended},
            as_json,
            f"Ended {ended} session(s) of {user.email}.",
        )


@click.group("roles")
def roles_group() -> None:
    """Custom roles and their permissions."""


@roles_group.command("create")
@click.argument("name")
@click.option("--org", "org_slug", required=True)
@click.option("--permissions", "names", default="", help="Comma-separated permission names.")
@json_option
@friendly_errors
def roles_create(name: str, org_slug: str, names: str, as_json: bool) -> None:
    """Create a custom role."""
    try:
        granted = permissions.parse(names)
    except ValueError as exc:
        raise ServiceError(f"{exc}; known: {', '.join(sorted(permissions.ALL))}") from None
    with app_context():
        org = orgs.get(org_slug)
        orgs.create_role(org, name, granted)
        audit.record(
            "role.create",
            target=name,
            org_id=org.id,
            origin=CLI,
            details={"permissions": sorted(granted)},
        )
        emit(
            {"org": org.slug, "role": name, "permissions": sorted(granted)},
            as_json,
            f"Created role {name!r} in {org.slug!r}: {', '.join(sorted(granted)) or 'none'}.",
        )


def _change_permission(name: str, permission: str, org_slug: str, granted: bool, as_json: bool):  # type: ignore[no-untyped-def]
    with app_context():
        org = orgs.get(org_slug)
        role = orgs.get_role(org, name)
        before = sorted(role.permissions)
        changed = orgs.set_role_permission(role, permission, granted)
        if changed:
            audit.record(
                "role.update",
                target=name,
                org_id=org.id,
                origin=CLI,
                details={"before": before, "after": sorted(role.permissions)},
            )
        db.session.commit()
        verb = "Granted" if granted else "Revoked"
        text = (
            f"{verb} {permission} {'to' if granted else 'from'} {name!r}."
            if changed
            else ("Nothing to change.")
        )
        emit(
            {"role": name, "permissions": sorted(role.permissions), "changed": changed},
            as_json,
            text,
        )


@roles_group.command("grant")
@click.argument("name")
@click.argument("permission")
@click.option("--org", "org_slug", required=True)
@json_option
@friendly_errors
def roles_grant(name: str, permission: str, org_slug: str, as_json: bool) -> None:
    """Add a permission to a custom role."""
    _change_permission(name, permission, org_slug, True, as_json)


@roles_group.command("revoke")
@click.argument("name")
@click.argument("permission")
@click.option("--org", "org_slug", required=True)
@json_option
@friendly_errors
def roles_revoke(name: str, permission: str, org_slug: str, as_json: bool) -> None:
    """Remove a permission from a custom role."""
    _change_permission(name, permission, org_slug, False, as_json)


COMMANDS = [orgs_group, users_group, sessions_group, roles_group]
