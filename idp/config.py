"""Every setting once: its default, its environment name and its parser.

Settings come from the environment (``BASCULE_*``) and, optionally, from a TOML file named by
``BASCULE_CONFIG`` that may set the same names in lower case. The environment wins. ``load``
validates everything up front so a bad value stops the process at start, with a message that
names the variable, instead of failing later on a request.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """A setting has a value we refuse to run with."""


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"expected a whole number from {low} to {high}")
        return number

    return parse


def _seconds_between(low: float, high: float) -> Callable[[str], float]:
    def parse(value: str) -> float:
        number = float(value)
        if not low <= number <= high:  # also refuses nan
            raise ValueError(f"expected a number of seconds from {low:g} to {high:g}")
        return number

    return parse


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("expected an absolute http:// or https:// URL")
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise ValueError("expected a base URL without path, query or fragment")
    return f"{parts.scheme}://{parts.netloc}"


def _optional_str(value: str) -> str | None:
    return value or None


def _path(value: str) -> Path:
    return Path(value).expanduser()


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one Bascule process."""

    issuer: str = "http://localhost:8000"
    gateway_url: str = "http://localhost:8080"
    database_url: str | None = None
    redis_url: str | None = None
    instance_dir: Path = Path("instance")
    keys_dir: Path = Path("keys")
    data_key: str | None = None
    bcrypt_rounds: int = 12
    gateway_policy: Path | None = None
    # Where the gateway sends requests, overriding the policy's [upstream] url (``bascule
    # serve`` points the bundled demo policy at the messaging app it runs).
    upstream_url: str | None = None
    # How long the gateway waits for the upstream to send something before answering 504.
    gateway_upstream_timeout: float = 30.0
    dev: bool | None = None
    smtp_url: str | None = None
    mail_from: str = "Bascule <no-reply@localhost>"
    session_idle_minutes: int = 30
    session_max_hours: int = 12
    password_min_length: int = 12
    login_max_failures: int = 5
    login_lockout_seconds: int = 60
    ip_max_failures: int = 50
    trusted_proxy_count: int = 0
    log_format: str = "text"
    log_level: str = "INFO"

    @property
    def is_dev(self) -> bool:
        """Plain-http development mode: on by default only for a localhost issuer."""
        if self.dev is not None:
            return self.dev
        return (urlsplit(self.issuer).hostname or "") in {"localhost", "127.0.0.1", "::1"}

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.instance_dir / 'bascule.db').resolve()}"


_PARSERS: dict[str, Callable[[str], Any]] = {
    "issuer": _url,
    "gateway_url": _url,
    "database_url": _optional_str,
    "redis_url": _optional_str,
    "instance_dir": _path,
    "keys_dir": _path,
    "data_key": _optional_str,
    "bcrypt_rounds": _int_between(4, 31),
    "gateway_policy": _path,
    "upstream_url": _url,
    "gateway_upstream_timeout": _seconds_between(0.1, 3600),
    "dev": _bool,
    "smtp_url": _optional_str,
    "mail_from": str,
    "session_idle_minutes": _int_between(1, 24 * 60),
    "session_max_hours": _int_between(1, 24 * 30),
    "password_min_length": _int_between(8, 128),
    "login_max_failures": _int_between(3, 100),
    "login_lockout_seconds": _int_between(1, 24 * 3600),
    "ip_max_failures": _int_between(10, 100_000),
    "trusted_proxy_count": _int_between(0, 5),
    "log_format": str,
    "log_level": str,
}


def load(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read, parse and validate settings; raise ConfigError naming the bad variable."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    config_file = environ.get("BASCULE_CONFIG")
    if config_file:
        raw.update(_read_toml(Path(config_file)))
    for name in _PARSERS:
        env_name = f"BASCULE_{name.upper()}"
        if env_name in environ:
            raw[name] = environ[env_name]

    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in _PARSERS:
            raise ConfigError(f"{config_file}: unknown setting {name!r}")
        try:
            values[name] = _PARSERS[name](str(value)) if not isinstance(value, bool) else value
        except ValueError as exc:
            raise ConfigError(f"BASCULE_{name.upper()}={value!r}: {exc}") from None
    known = {f.name for f in fields(Settings)}
    values.update({k: v for k, v in overrides.items() if k in known})
    settings = Settings(**values)
    validate(settings)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"BASCULE_CONFIG={path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"BASCULE_CONFIG={path}: not valid TOML ({exc})") from None


def validate(settings: Settings) -> None:
    """Refuse settings that would run production without TLS or with nonsense values."""
    for name in ("issuer", "gateway_url"):
        url = getattr(settings, name)
        if url.startswith("http://") and not settings.is_dev:
            raise ConfigError(
                f"BASCULE_{name.upper()}={url}: plain http is only allowed in development; "
                "use https:// or set BASCULE_DEV=1 for a local trial"
            )
    if settings.log_format not in {"text", "json"}:
        raise ConfigError(f"BASCULE_LOG_FORMAT={settings.log_format!r}: expected text or json")
    if settings.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"BASCULE_LOG_LEVEL={settings.log_level!r}: expected DEBUG..ERROR")
    if settings.redis_url and urlsplit(settings.redis_url).scheme not in {"redis", "rediss"}:
        raise ConfigError(
            f"BASCULE_REDIS_URL={settings.redis_url!r}: expected redis:// or rediss://"
        )
    if settings.session_max_hours * 60 < settings.session_idle_minutes:
        raise ConfigError("BASCULE_SESSION_IDLE_MINUTES exceeds BASCULE_SESSION_MAX_HOURS")
