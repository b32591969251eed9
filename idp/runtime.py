"""The parts a running IdP is wired with, built once in ``create_app``.

Views reach them through ``runtime()``; services receive what they need as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from idp.common.clock import Clock
from idp.common.sealing import Keyring
from idp.common.session_record import COOKIE_NAME, DEV_COOKIE_NAME, Limits
from idp.common.store import Store
from idp.config import Settings
from idp.services.mail import Mailer


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
        return DEV_COOKIE_NAME if self.settings.is_dev else COOKIE_NAME


def runtime() -> Runtime:
    return current_app.extensions["bascule"]  # type: ignore[no-any-return]
