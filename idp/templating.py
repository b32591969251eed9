"""Template filters and globals the pages share."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask

from idp.config import Settings


def format_timestamp(value: float | None) -> str:
    if value is None:
        return "—"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M UTC")


def install_template_helpers(app: Flask, settings: Settings) -> None:
    app.add_template_filter(format_timestamp, "datetime")
    app.add_template_global(settings.password_min_length, "password_min_length")
