"""The parts a running IdP is wired with, built once in ``create_app``.

Views reach them through ``runtime()``; services receive what they need as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from idp.common.clock import Clock
from idp.common.sealing import Keyring
from idp.common.store import Store
from idp.config import Settings
from idp.services.mail import Mailer
from idp.services.sessions import Limits


@dataclass
class Runtime:
    settings: Settings
    store: Store
    clock: Clock
    keyring: Keyring
    mailer: Mailer

    @property
    def session_limits(self) -> Limits:
        return Limits(
            idle_seconds=self.settings.session_idle_minutes * 60,
            absolute_seconds=self.settings.session_max_hours * 3600,
        )

    @property
    def session_cookie_name(self) -> str:
        # The __Host- prefix makes the browser refuse the cookie unless it is Secure, has
        # Path=/ and no Domain: no subdomain or plain-http page can plant or read it.
        return "bascule_session" if self.settings.is_dev else "__Host-bascule_session"


def runtime() -> Runtime:
    return current_app.extensions["bascule"]  # type: ignore[no-any-return]
