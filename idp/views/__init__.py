"""Thin blueprints: parse input, call a service, render or redirect."""

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from idp.views import account, admin, api, auth, health, mfa_account, mfa_login, password_links

    for module in (auth, mfa_login, password_links, account, mfa_account, admin, health, api):
        app.register_blueprint(module.bp)
