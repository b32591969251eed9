"""OpenID Connect clients and key rotation from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from idp.cli._common import app_context, emit, friendly_errors, json_option, settings
from idp.common.sealing import create_data_key
from idp.extensions import db
from idp.runtime import runtime
from idp.services import audit, orgs
from idp.services.audit import CLI
from idp.services.errors import ServiceError
from idp.services.oidc import clients, keys


@click.group("clients")
def clients_group() -> None:
    """OpenID Connect clients (relying parties)."""


@clients_group.command("create")
@click.option("--name", required=True, help="Shown to users on the consent page.")
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="Exact; repeat for more.")
@click.option("--public", is_flag=True, help="No secret (SPA, mobile): PKCE only.")
@click.option("--first-party", is_flag=True, help="Your own application: no consent page.")
@click.option("--post-logout-redirect-uri", "logout_uris", multiple=True)
@click.option("--backchannel-logout-uri", default=None)
@click.option(
    "--grant",
    "grant_types",
    multiple=True,
    type=click.Choice(clients.GRANT_TYPES),
    help="Grant types (default: authorization_code and refresh_token).",
)
@click.option(
    "--auth-method",
    type=click.Choice(clients.AUTH_METHODS),
    help="Token endpoint authentication (default client_secret_basic, none with --public).",
)
@click.option(
    "--jwks-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The client's public keys, for private_key_jwt.",
)
@click.option("--id-token-alg", type=click.Choice(["RS256", "ES256"]), default="RS256")
@click.option("--org", "org_slug", default=None, help="Organisation whose admins manage it.")
@json_option
@friendly_errors
def clients_create(
    name: str,
    redirect_uris: tuple[str, ...],
    public: bool,
    first_party: bool,
    logout_uris: tuple[str, ...],
    backchannel_logout_uri: str | None,
    grant_types: tuple[str, ...],
    auth_method: str | None,
    jwks_file: Path | None,
    id_token_alg: str,
    org_slug: str | None,
    as_json: bool,
) -> None:
    """Register a client; a confidential one's secret is printed once."""
    jwks = _read_jwks(jwks_file) if jwks_file else None
    with app_context():
        created = clients.create_client(
            name,
            list(redirect_uris),
            public=public,
            first_party=first_party,
            post_logout_redirect_uris=list(logout_uris),
            backchannel_logout_uri=backchannel_logout_uri,
            auth_method=auth_method,
            grant_types=list(grant_types) or None,
            jwks=jwks,
            id_token_alg=id_token_alg,
            org_id=orgs.get(org_slug).id if org_slug else None,
            actor=audit.Actor(email="operator (cli)"),
            origin=CLI,
        )
        data = clients.describe(created.client)
        text = f"Client {created.client.name!r}\n  client_id:     {created.client.id}"
        if created.secret:
            data["client_secret"] = created.secret
            text += f"\n  client_secret: {created.secret}   (shown once: store it now)"
        text += f"\n  issuer:        {_issuer()}  (everything else is found by discovery)"
        emit(data, as_json, text)


def _read_jwks(path: Path) -> dict[str, Any]:
    try:
        jwks = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ServiceError(f"{path}: not a JSON key set ({exc})") from None
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise ServiceError(f"{path}: a JWK set is an object with a 'keys' list")
    if any("d" in key for key in jwks["keys"] if isinstance(key, dict)):
        raise ServiceError(f"{path}: holds a private key; give only the public keys")
    return jwks


def _issuer() -> str:
    return runtime().settings.issuer


@clients_group.command("list")
@json_option
@friendly_errors
def clients_list(as_json: bool) -> None:
    """The registered clients."""
    with app_context():
        found = [clients.describe(c) for c in clients.all_clients()]
        lines = [f"{c['client_id']}  {c['name']}  ({c['type']}, {c['auth_method']})" for c in found]
        emit(found, as_json, "\n".join(lines) or "No clients.")


@clients_group.command("reset-secret")
@click.argument("client_id")
@json_option
@friendly_errors
def clients_reset_secret(client_id: str, as_json: bool) -> None:
    """A new secret for a confidential client; the old one stops working now."""
    with app_context():
        client = clients.require(client_id)
        secret = clients.new_secret(client, actor=audit.Actor(email="operator (cli)"), origin=CLI)
        emit(
            {"client_id": client.id, "client_secret": secret},
            as_json,
            f"New secret for {client.id} (shown once): {secret}",
        )


@clients_group.command("delete")
@click.argument("client_id")
@json_option
@friendly_errors
def clients_delete(client_id: str, as_json: bool) -> None:
    """Delete a client and everything issued to it."""
    with app_context():
        client = clients.require(client_id)
        clients.delete(client, actor=audit.Actor(email="operator (cli)"), origin=CLI)
        db.session.commit()
        emit({"deleted": client_id}, as_json, f"Deleted client {client_id}.")


@click.group("keys")
def keys_group() -> None:
    """Token-signing keys and data keys."""


@keys_group.command("rotate")
@click.option("--signing", is_flag=True, help="New token-signing keys (RS256, ES256).")
@click.option("--data", is_flag=True, help="A new data key for sealing secrets at rest.")
@json_option
@friendly_errors
def keys_rotate(signing: bool, data: bool, as_json: bool) -> None:
    """Rotate keys. Old signing keys stay published until their tokens expire; old data keys
    stay to unseal what they sealed."""
    if not (signing or data):
        raise click.UsageError("say which: --signing, --data or both")
    result: dict[str, Any] = {}
    lines = []
    if data:
        current = settings()
        if current.data_key:
            raise ServiceError("The data key comes from BASCULE_DATA_KEY: rotate it there.")
        key_id = create_data_key(current.keys_dir)
        result["data_key"] = key_id
        lines.append(f"New data key {key_id} seals from now on; older keys still unseal.")
        with app_context():
            audit.record("keys.rotate_data", origin=CLI, details={"new": key_id})
    if signing:
        with app_context():
            new = keys.rotate(actor=audit.Actor(email="operator (cli)"), origin=CLI)
        result["signing_keys"] = new
        lines.append(
            "New signing keys " + ", ".join(new) + "; the previous ones stay in the JWKS for "
            f"{int(keys.PUBLISH_AFTER_RETIREMENT.total_seconds() // 60)} minutes."
        )
    emit(result, as_json, "\n".join(lines))


COMMANDS = [clients_group, keys_group]
