"""Thin blueprints: parse input, call a service, render or redirect."""

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from idp.views import (
        account,
        admin,
        api,
        auth,
        gateway_api,
        health,
        mfa_account,
        mfa_login,
        oidc,
        password_links,
        saml,
    )

    modules = (
        auth, mfa_login, password_links, account, mfa_account, admin, health, api, oidc,
        gateway_api, saml,
    )  # fmt: skip
    for module in modules:
        app.register_blueprint(module.bp)
