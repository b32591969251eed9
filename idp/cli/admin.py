"""Organisations, users, roles, sessions and API tokens from the command line.

The operator at the shell acts as root: each command calls the same services as the admin
console and API, as ``authz.operator(org)``, so the rules (last owner, audit) are the same.
"""

from __future__ import annotations

import sys

import click

from idp.cli._common import app_context, emit, friendly_errors, json_option, service_context
from idp.common import permissions
from idp.extensions import db
from idp.models import ApiToken
from idp.runtime import runtime
from idp.services import api_tokens, audit, members, orgs, roles, sessions, users
from idp.services.audit import CLI
from idp.services.authz import operator
from idp.services.errors import NotFound, ServiceError


def _member_id(email: str, org_slug: str) -> tuple[orgs.Organisation, int]:
    org = orgs.get(org_slug)
    member = orgs.membership(users.get_by_email(email), org)
    if member is None:
        raise NotFound(f"{users.normalise_email(email)} is not a member of {org.slug!r}")
    return org, member.id


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
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    with app_context():
        org = orgs.get(org_slug)
        try:
            member, link = members.invite(
                operator(org), service_context(), email, role, name, password
            )
        except users.PasswordRejected as exc:
            raise ServiceError(f"password refused: {exc}") from None
        db.session.commit()
        user = member.user
        data: dict[str, object] = {"id": user.id, "email": user.email, "org": org.slug}
        text = f"Created {user.email} ({role} in {org.slug!r})."
        if link:
            data["invitation_link"] = link
            text += f"\nInvitation link: {link}"
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
        org, member_id = _member_id(email, org_slug)
        before = db.session.get(orgs.Membership, member_id).role.name  # type: ignore[union-attr]
        members.change_role(operator(org), service_context(), member_id, role)
        address = users.normalise_email(email)
        emit(
            {"email": address, "org": org.slug, "role": role, "previous_role": before},
            as_json,
            f"{address} is now {role} in {org.slug!r} (was {before}).",
        )


def _set_active(email: str, active: bool, as_json: bool) -> None:
    with app_context():
        user = users.get_by_email(email)
        ended = users.set_active(
            user, active, store=runtime().store, actor=operator_actor(), origin=CLI
        )
        state = "enabled" if active else f"disabled ({ended} session(s) ended)"
        emit(
            {"email": user.email, "active": active, "sessions_revoked": ended},
            as_json,
            f"{user.email} {state}.",
        )


def operator_actor() -> audit.Actor:
    return audit.Actor(email="operator (cli)")


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
        audit.record(
            "session.revoke_all",
            actor=operator_actor(),
            target=user.email,
            origin=CLI,
            details={"count": ended},
        )
        emit(
            {"email": user.email, "sessions_revoked": ended},
            as_json,
            f"Ended {ended} session(s) of {user.email}.",
        )


@click.group("roles")
def roles_group() -> None:
    """Custom roles and their permissions."""


def _parse_permissions(names: str) -> frozenset[str]:
    try:
        return permissions.parse(names)
    except ValueError as exc:
        raise ServiceError(f"{exc}; known: {', '.join(sorted(permissions.ALL))}") from None


@roles_group.command("create")
@click.argument("name")
@click.option("--org", "org_slug", required=True)
@click.option("--permissions", "names", default="", help="Comma-separated permission names.")
@json_option
@friendly_errors
def roles_create(name: str, org_slug: str, names: str, as_json: bool) -> None:
    """Create a custom role."""
    granted = _parse_permissions(names)
    with app_context():
        org = orgs.get(org_slug)
        roles.create(operator(org), service_context(), name, granted)
        listed = ", ".join(sorted(granted)) or "none"
        emit(
            {"org": org.slug, "role": name, "permissions": sorted(granted)},
            as_json,
            f"Created role {name!r} in {org.slug!r}: {listed}.",
        )


def _change_permission(
    name: str, permission: str, org_slug: str, granted: bool, as_json: bool
) -> None:
    if permission not in permissions.ALL:
        raise ServiceError(f"unknown permission {permission!r}")
    with app_context():
        org = orgs.get(org_slug)
        role = orgs.get_role(org, name)
        before = role.permissions
        after = before | {permission} if granted else before - {permission}
        roles.set_permissions(operator(org), service_context(), role.id, after)
        db.session.commit()
        verb = "Granted" if granted else "Revoked"
        preposition = "to" if granted else "from"
        changed = before != after
        text = f"{verb} {permission} {preposition} {name!r}." if changed else "Nothing to change."
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


@click.group("tokens")
def tokens_group() -> None:
    """Personal API tokens for the admin API."""


@tokens_group.command("create")
@click.option("--user", "email", required=True)
@click.option("--org", "org_slug", required=True)
@click.option("--name", default="API token", show_default=True)
@json_option
@friendly_errors
def tokens_create(email: str, org_slug: str, name: str, as_json: bool) -> None:
    """Create a token acting as a member (printed once; store it now)."""
    with app_context():
        org = orgs.get(org_slug)
        issued = api_tokens.create(
            operator(org), service_context(), users.get_by_email(email), name
        )
        emit(
            {"id": issued.token.id, "token": issued.secret, "name": issued.token.name},
            as_json,
            f"Token {issued.token.id} ({issued.token.name}), shown once:\n{issued.secret}",
        )


@tokens_group.command("revoke")
@click.argument("token_id", type=int)
@json_option
@friendly_errors
def tokens_revoke(token_id: int, as_json: bool) -> None:
    """Revoke a token; it stops working at once."""
    with app_context():
        token = db.session.get(ApiToken, token_id)
        if token is None:
            raise NotFound(f"no API token {token_id}")
        api_tokens.revoke(operator(token.org), service_context(), token_id)
        emit({"id": token_id, "revoked": True}, as_json, f"Token {token_id} revoked.")


COMMANDS = [orgs_group, users_group, sessions_group, roles_group, tokens_group]
