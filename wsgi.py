"""WSGI entry points for gunicorn: ``gunicorn wsgi:idp_app`` and ``gunicorn wsgi:gateway_app``."""

from gateway.app import create_app as create_gateway_app
from idp.app import create_app as create_idp_app

idp_app = create_idp_app()
gateway_app = create_gateway_app()
