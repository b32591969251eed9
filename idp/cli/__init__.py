"""The ``bascule`` command: one small module per command group."""

from __future__ import annotations

import click

from idp.cli import admin, audit, oidc, policy, saml, serve, setup


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Bascule: identity provider and zero-trust auth gateway."""


for group in (setup, serve, admin, audit, oidc, policy, saml):
    for command in group.COMMANDS:
        main.add_command(command)
