"""An organisation's security settings, within bounds the instance sets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from idp.common.permissions import SECURITY_MANAGE
from idp.config import Settings
from idp.extensions import db
from idp.models import Organisation
from idp.services import audit, authz
from idp.services.authz import Principal
from idp.services.credentials import Context
from idp.services.errors import ServiceError
from idp.services.sessions import Limits

MAX_REDIRECT_ORIGINS = 20


@dataclass(frozen=True)
class Bounds:
    """What an organisation may choose: only tighter than the instance, never looser."""

    name: str
    low: int
    high: int


def bounds(settings: Settings) -> dict[str, Bounds]:
    return {
        "session_idle_minutes": Bounds("session_idle_minutes", 5, settings.session_idle_minutes),
        "session_max_hours": Bounds("session_max_hours", 1, settings.session_max_hours),
        "password_min_length": Bounds("password_min_length", settings.password_min_length, 128),
    }


def effective(org: Organisation, settings: Settings) -> dict[str, Any]:
    """The values in force for ``org``: its own where set, else the instance's."""
    return {
        "session_idle_minutes": org.session_idle_minutes or settings.session_idle_minutes,
        "session_max_hours": org.session_max_hours or settings.session_max_hours,
        "password_min_length": org.password_min_length or settings.password_min_length,
        "redirect_origins": list(org.redirect_origins or []),
    }


def view(principal: Principal, settings: Settings) -> dict[str, Any]:
    authz.require(principal, SECURITY_MANAGE)
    return effective(principal.org, settings)


def update(principal: Principal, ctx: Context, changes: dict[str, Any]) -> dict[str, Any]:
    """Apply ``changes`` (any subset of the settings) after checking every value."""
    authz.require(principal, SECURITY_MANAGE)
    org = principal.org
    limits = bounds(ctx.settings)
    before = effective(org, ctx.settings)
    unknown = set(changes) - {*limits, "redirect_origins"}
    if unknown:
        raise ServiceError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for name, limit in limits.items():
        if name in changes:
            values[name] = _bounded(changes[name], limit)
    if "redirect_origins" in changes:
        values["redirect_origins"] = _origins(changes["redirect_origins"])
    for name, value in values.items():
        setattr(org, name, value)
    after = effective(org, ctx.settings)
    if after != before:
        audit.record(
            "org.settings_change",
            actor=principal.actor,
            org_id=org.id,
            target=org.slug,
            origin=ctx.origin,
            details={"before": before, "after": after},
            now=ctx.now,
        )
    return after


def _bounded(value: Any, limit: Bounds) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ServiceError(f"{limit.name} must be a whole number")
    try:
        number = int(value)
    except ValueError:
        raise ServiceError(f"{limit.name} must be a whole number") from None
    if not limit.low <= number <= limit.high:
        raise ServiceError(f"{limit.name} must be between {limit.low} and {limit.high}")
    return number


def _origins(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [line.strip() for line in value.splitlines() if line.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ServiceError("redirect_origins must be a list of origins")
    if len(value) > MAX_REDIRECT_ORIGINS:
        raise ServiceError(f"at most {MAX_REDIRECT_ORIGINS} redirect origins")
    origins = []
    for origin in value:
        try:
            parts = urlsplit(origin)
            parts.port  # noqa: B018 (parsing the port raises on "https://a:x" or ":99999")
        except ValueError:  # "https://[x": a malformed address is a refusal, not a crash
            raise ServiceError(f"{origin[:100]!r} is not a valid URL") from None
        if parts.scheme != "https" or not parts.hostname or parts.path not in {"", "/"}:
            raise ServiceError(f"{origin[:100]!r} is not an https origin like https://app.example")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ServiceError(f"{origin[:100]!r} is not a plain origin")
        origins.append(f"https://{parts.netloc.lower()}")
    return sorted(set(origins))


def session_limits(org: Organisation, settings: Settings) -> Limits:
    """The session limits a sign-in into ``org`` gets."""
    values = effective(org, settings)
    return Limits(values["session_idle_minutes"] * 60, values["session_max_hours"] * 3600)


def redirect_targets(org_id: str | None, settings: Settings) -> list[str]:
    """Origins a sign-in into ``org_id`` may return to besides the IdP: the gateway, and the
    origins the organisation's admins allowed."""
    org = db.session.get(Organisation, org_id) if org_id else None
    return [settings.gateway_url, *((org.redirect_origins or []) if org else [])]
