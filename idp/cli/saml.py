"""SAML single sign-on connections from the command line (``bascule saml …``).

The operator acts as ``authz.operator(org)`` through the same services as the console and API.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from idp.cli._common import app_context, emit, friendly_errors, json_option, service_context
from idp.extensions import db
from idp.runtime import runtime
from idp.services import orgs
from idp.services.authz import operator
from idp.services.errors import ServiceError
from idp.services.saml import connections, sp
from idp.services.saml.connections import Changes


@click.group("saml")
def saml_group() -> None:
    """SAML single sign-on connections (Bascule is the Service Provider)."""


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, mapped = value.partition("=")
        if not sep or not key.strip() or not mapped.strip():
            raise ServiceError(f"{what} must look like NAME=VALUE, not {value!r}")
        pairs[key.strip()] = mapped.strip()
    return pairs


_setting_options = [
    click.option("--domain", "domains", multiple=True, help="An email domain (repeatable)."),
    click.option(
        "--preset",
        type=click.Choice(sorted(connections.PRESETS)),
        help="Attribute names as this IdP sends them by default.",
    ),
    click.option(
        "--attribute",
        "attributes",
        multiple=True,
        help="OURS=THEIRS, e.g. email=mail (ours: email, given_name, family_name, groups).",
    ),
    click.option("--group-role", "group_roles", multiple=True, help="IdP group=role name."),
    click.option("--default-role", help="Role for people in no mapped group."),
    click.option("--enforce/--no-enforce", default=None, help="Refuse passwords on the domains."),
    click.option(
        "--break-glass/--no-break-glass",
        default=None,
        help="Owners may still use a password while SSO is enforced (audited).",
    ),
    click.option(
        "--idp-initiated/--no-idp-initiated",
        default=None,
        help="Accept sign-ins that start at the IdP (off by default).",
    ),
]


def setting_options(command: Any) -> Any:
    for option in reversed(_setting_options):
        command = option(command)
    return command


def _changes(options: dict[str, Any], replace_domains: bool) -> Changes:
    attribute_map = dict(connections.PRESETS[options["preset"]]) if options["preset"] else {}
    attribute_map.update(_pairs(options["attributes"], "--attribute"))
    return Changes(
        domains=list(options["domains"]) if options["domains"] or replace_domains else None,
        attribute_map=attribute_map or None,
        group_roles=_pairs(options["group_roles"], "--group-role") or None,
        default_role=options["default_role"],
        enforce_sso=options["enforce"],
        owner_break_glass=options["break_glass"],
        allow_idp_initiated=options["idp_initiated"],
    )


def _show(data: dict[str, Any]) -> str:
    lines = [f"SSO connection {data['slug']!r} of {data['org']!r}"]
    lines += [
        f"  IdP entity ID:   {data['idp_entity_id']}",
        f"  domains:         {', '.join(data['domains']) or '(none)'}",
        f"  enforce SSO:     {'yes' if data['enforce_sso'] else 'no'}",
        f"  group → role:    {data['group_roles'] or '(none)'}; default {data['default_role']}",
        "Give your IdP these (or the metadata URL):",
        f"  SP metadata URL: {data['sp_metadata_url']}",
        f"  SP entity ID:    {data['sp_entity_id']}",
        f"  ACS URL:         {data['acs_url']}",
        f"  SLS URL:         {data['sls_url']}",
        f"Sign-in link:      {data['login_url']}",
    ]
    return "\n".join(lines)


@saml_group.command("add")
@click.argument("org_slug")
@click.option("--slug", required=True, help="The connection's name in its URLs.")
@click.option(
    "--metadata-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The IdP's metadata XML.",
)
@click.option("--metadata-url", help="Where to fetch the IdP's metadata (and refresh it).")
@setting_options
@json_option
@friendly_errors
def saml_add(
    org_slug: str,
    slug: str,
    metadata_file: Path | None,
    metadata_url: str | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Connect an organisation to its SAML IdP; prints what to give the IdP."""
    if bool(metadata_file) == bool(metadata_url):
        raise click.UsageError("give one of --metadata-file or --metadata-url")
    xml = metadata_file.read_bytes() if metadata_file else None
    with app_context():
        org = orgs.get(org_slug)
        idp = connections.load_metadata(operator(org), xml, metadata_url)
        changes = replace(_changes(options, replace_domains=False), metadata_url=metadata_url)
        conn = connections.create(
            operator(org), service_context(), runtime().keyring, slug, idp, changes
        )
        db.session.commit()
        data = connections.describe(conn, runtime().settings.issuer)
        emit(data, as_json, _show(data))


@saml_group.command("set")
@click.argument("slug")
@setting_options
@click.option("--clear-domains", is_flag=True, help="Replace the domains (with --domain, if any).")
@json_option
@friendly_errors
def saml_set(slug: str, clear_domains: bool, as_json: bool, **options: Any) -> None:
    """Change a connection's domains, mapping and switches (what is not given stays)."""
    with app_context():
        conn = connections.get(slug)
        connections.update(
            operator(conn.org), service_context(), conn, _changes(options, clear_domains)
        )
        db.session.commit()
        data = connections.describe(conn, runtime().settings.issuer)
        emit(data, as_json, _show(data))


@saml_group.command("list")
@json_option
@friendly_errors
def saml_list(as_json: bool) -> None:
    """Every SSO connection on the instance."""
    with app_context():
        issuer = runtime().settings.issuer
        found = [connections.describe(c, issuer) for c in connections.all_connections()]
        lines = [
            f"{c['slug']}  {c['org']}  {', '.join(c['domains']) or '(no domain)'}"
            f"{'  enforced' if c['enforce_sso'] else ''}"
            for c in found
        ]
        emit(found, as_json, "\n".join(lines) or "No SSO connections.")


@saml_group.command("show")
@click.argument("slug")
@json_option
@friendly_errors
def saml_show(slug: str, as_json: bool) -> None:
    """One connection, with the URLs to give the IdP."""
    with app_context():
        data = connections.describe(connections.get(slug), runtime().settings.issuer)
        emit(data, as_json, _show(data))


@saml_group.command("metadata")
@click.argument("slug")
@friendly_errors
def saml_metadata(slug: str) -> None:
    """Print our SP metadata XML for the IdP."""
    with app_context():
        rt = runtime()
        click.echo(sp.sp_metadata(connections.get(slug), rt.settings.issuer, rt.keyring))


@saml_group.command("refresh")
@click.argument("slug")
@click.option(
    "--metadata-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="New metadata from a file instead of the connection's URL.",
)
@json_option
@friendly_errors
def saml_refresh(slug: str, metadata_file: Path | None, as_json: bool) -> None:
    """Take the IdP's metadata again (new certificates, moved endpoints)."""
    with app_context():
        conn = connections.get(slug)
        principal, ctx = operator(conn.org), service_context()
        if metadata_file:
            idp = connections.load_metadata(principal, metadata_file.read_bytes(), None)
            connections.replace_metadata(principal, ctx, conn, idp)
        else:
            connections.refresh(principal, ctx, conn)
        db.session.commit()
        data = connections.describe(conn, runtime().settings.issuer)
        emit(data, as_json, f"Refreshed {slug!r}: {data['idp_certificates']} certificate(s).")


@saml_group.command("remove")
@click.argument("slug")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@friendly_errors
def saml_remove(slug: str, yes: bool, as_json: bool) -> None:
    """Delete a connection: its people keep their accounts, without SSO."""
    if not yes:
        click.confirm(f"Delete SSO connection {slug!r}?", abort=True)
    with app_context():
        conn = connections.get(slug)
        connections.delete(operator(conn.org), service_context(), conn)
        db.session.commit()
        emit({"slug": slug, "deleted": True}, as_json, f"Deleted SSO connection {slug!r}.")


COMMANDS = [saml_group]
