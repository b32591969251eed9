"""Thin blueprints: parse input, call a service, render or redirect."""

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from idp.views import account, auth, health, password_links

    for module in (auth, password_links, account, health):
        app.register_blueprint(module.bp)
