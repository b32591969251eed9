"""The composition root: config, extensions, runtime, blueprints, error handlers, in that order."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from idp import config as config_module
from idp.common import logs
from idp.common.clock import Clock, system_clock
from idp.common.database import engine_options
from idp.common.sealing import load_keyring
from idp.common.store import Store, open_store
from idp.extensions import init_extensions
from idp.runtime import Runtime
from idp.services.mail import Mailer
from idp.session_interface import StoreSessionInterface

ROOT = Path(__file__).resolve().parent.parent
MAX_REQUEST_BYTES = 1024 * 1024

log = logging.getLogger("bascule.idp")


def create_app(
    settings: config_module.Settings | None = None,
    *,
    store: Store | None = None,
    clock: Clock = system_clock,
    flask_config: dict[str, Any] | None = None,
    dev_warning: bool = True,
) -> Flask:
    """Build an IdP app. Tests pass their own settings, store and clock.

    ``dev_warning=False`` is for command-line tools, which serve nothing: the warning about
    plain http belongs to the servers' start, not in front of every command's output.
    """
    settings = settings or config_module.load()
    logs.configure(settings.log_level, settings.log_format)
    app = Flask(
        "idp",
        template_folder=str(ROOT / "templates"),
        static_folder=str(Path(__file__).parent / "static"),
        instance_path=str(settings.instance_dir.resolve()),
    )
    keyring = load_keyring(settings.keys_dir, settings.data_key)
    app.config.update(
        SECRET_KEY=keyring.derive("bascule flask secret key"),
        SQLALCHEMY_DATABASE_URI=settings.sqlalchemy_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(settings.sqlalchemy_url),
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        MAX_FORM_MEMORY_SIZE=256 * 1024,
        MAX_FORM_PARTS=200,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as its session, no longer
        WTF_CSRF_SSL_STRICT=not settings.is_dev,
        PREFERRED_URL_SCHEME="http" if settings.is_dev else "https",
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.config.update(flask_config or {})
    init_extensions(app)

    rt = Runtime(
        settings=settings,
        store=store or open_store(settings.redis_url, settings.sqlalchemy_url),
        clock=clock,
        keyring=keyring,
        mailer=Mailer(settings.mail_from, settings.smtp_url, settings.instance_dir / "outbox"),
    )
    app.extensions["bascule"] = rt
    app.session_interface = StoreSessionInterface(rt)
    if settings.trusted_proxy_count:
        n = settings.trusted_proxy_count
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

    from idp.services import permission_cache
    from idp.services.oidc import logout, server
    from idp.templating import install_template_helpers
    from idp.views import register_blueprints
    from idp.views._helpers import origin
    from idp.web import install_web_security

    app.extensions["bascule_oidc"] = server.build(app, origin)
    logout.install()
    permission_cache.install()
    register_blueprints(app)
    install_template_helpers(app, settings)
    install_web_security(app, settings)
    if settings.is_dev and dev_warning:
        log.warning(
            "DEVELOPMENT MODE: plain http allowed, cookies are not Secure. "
            "Never expose this instance; set an https:// BASCULE_ISSUER in production."
        )
    return app
