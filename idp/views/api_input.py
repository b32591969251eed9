"""Strict parsing of the admin API's input: bearer token, JSON bodies, query strings.

Anything unexpected is refused with a 4xx naming the field, before a service sees it: an
unknown field (a typo that would otherwise be silently ignored), a wrong type, an absurd
length, or text that a database cannot store (NUL, lone surrogates), which would otherwise
turn a bad request into a 500.
"""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime
from typing import Any, NoReturn

from flask import abort, request

MAX_PAGE = 100_000
MAX_PER_PAGE = 200
JSON_TYPES = {"application/json"}


def bad(message: str) -> NoReturn:
    abort(400, description=message)


def bearer_token() -> str | None:
    """The token from ``Authorization: Bearer …``, or None when there is none."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def json_body(allowed: set[str], required: set[str] | None = None) -> dict[str, Any]:
    """The request's JSON object, with only ``allowed`` keys and every ``required`` one."""
    if request.mimetype not in JSON_TYPES and not request.mimetype.endswith("+json"):
        abort(415, description="Send the request body as application/json.")
    try:
        data = json.loads(request.get_data(cache=False))
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        bad("The request body is not valid JSON.")
    if not isinstance(data, dict):
        bad("The request body must be a JSON object.")
    unknown = sorted(set(data) - allowed)
    if unknown:
        bad(f"Unknown field(s): {', '.join(_shown(k) for k in unknown)}.")
    missing = sorted((required or set()) - set(data))
    if missing:
        bad(f"Missing field(s): {', '.join(missing)}.")
    return data


def text(value: Any, name: str, max_length: int, min_length: int = 0) -> str:
    """A string without control characters that every database can store."""
    if not isinstance(value, str):
        bad(f"{name} must be a string.")
    if not min_length <= len(value) <= max_length:
        bad(f"{name} must be {min_length} to {max_length} characters long.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape
        bad(f"{name} contains characters that are not valid Unicode.")
    if any(unicodedata.category(c) == "Cc" for c in value):
        bad(f"{name} must not contain control characters.")
    return value


def boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        bad(f"{name} must be true or false.")
    return value


def integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        bad(f"{name} must be a whole number.")
    return value


def text_list(value: Any, name: str, max_items: int, max_length: int) -> list[str]:
    if not isinstance(value, list):
        bad(f"{name} must be a list of strings.")
    if len(value) > max_items:
        bad(f"{name} has more than {max_items} entries.")
    return [text(item, f"each entry of {name}", max_length) for item in value]


def query(allowed: set[str]) -> dict[str, str]:
    """The query string as single values, refusing unknown or repeated parameters."""
    args = request.args
    unknown = sorted(set(args) - allowed)
    if unknown:
        bad(f"Unknown query parameter(s): {', '.join(_shown(k) for k in unknown)}.")
    repeated = sorted(k for k in args if len(args.getlist(k)) > 1)
    if repeated:
        bad(f"Query parameter(s) given more than once: {', '.join(repeated)}.")
    return {k: v for k, v in args.items()}


def query_text(params: dict[str, str], name: str, max_length: int) -> str | None:
    value = params.get(name)
    return text(value, name, max_length) if value else None


def query_int(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9 or not low <= int(raw) <= high:
        bad(f"{name} must be a whole number from {low} to {high}.")
    return int(raw)


def page_args(params: dict[str, str]) -> tuple[int, int]:
    return (
        query_int(params, "page", 1, 1, MAX_PAGE),
        query_int(params, "per_page", 50, 1, MAX_PER_PAGE),
    )


def query_time(params: dict[str, str], name: str) -> datetime | None:
    """An RFC 3339 date-time (a date alone means its midnight UTC)."""
    raw = params.get(name)
    if raw is None:
        return None
    example = "2025-01-31T12:00:00Z"
    if len(raw) > 40 or not raw.isascii():
        bad(f"{name} must be a date-time like {example}.")
    try:
        moment = datetime.fromisoformat(raw.upper())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 shifted out of range
        bad(f"{name} must be a date-time like {example}.")


def _shown(key: str) -> str:
    """A client-chosen name, cut short and quoted, fit to appear in a message."""
    return repr(key[:40])
