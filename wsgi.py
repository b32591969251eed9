"""WSGI entry points for gunicorn: ``gunicorn wsgi:idp_app`` and ``gunicorn wsgi:gateway_app``.

Each app is built on first access, so a gateway process never builds (or needs the database
of) the IdP, and the other way round.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "idp_app":
        from idp.app import create_app

        return create_app()
    if name == "gateway_app":
        from gateway.app import create_app as create_gateway_app

        return create_gateway_app()
    raise AttributeError(name)
