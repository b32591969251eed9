"""Template filters and globals the pages share."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask

from idp.config import Settings


def format_timestamp(value: float | None) -> str:
    if value is None:
        return "—"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M UTC")


# First match wins: Edge and Opera also say "Chrome", Chrome also says "Safari", Android also
# says "Linux" and iPhones also say "Mac OS X".
_BROWSERS = [
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
]
_SYSTEMS = [
    ("Windows", "Windows"),
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("CrOS", "ChromeOS"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
]


def describe_device(user_agent: str | None) -> str:
    """A name a person knows, like "Firefox on Windows"; other clients' User-Agent as it is."""
    if not user_agent:
        return "Unknown browser"
    browser = next((name for token, name in _BROWSERS if token in user_agent), None)
    if browser is None:
        return user_agent[:80]
    system = next((name for token, name in _SYSTEMS if token in user_agent), None)
    return f"{browser} on {system}" if system else browser


def install_template_helpers(app: Flask, settings: Settings) -> None:
    app.add_template_filter(format_timestamp, "datetime")
    app.add_template_filter(describe_device, "device")
    app.add_template_global(settings.password_min_length, "password_min_length")
