"""Where we may send a browser after sign-in: our own origin, or origins an admin allowed."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

MAX_TARGET = 2048


def safe_next(
    target: str | None, origin: str, default: str = "/account", also: Iterable[str] = ()
) -> str:
    """Return ``target`` if it is a path on ``origin``, a URL on ``origin`` or on one of the
    origins in ``also`` (exact scheme, host and port), else ``default``.

    Refuses scheme-relative (``//evil``), backslash (``/\\evil``, which browsers read as
    ``//evil``), control characters, userinfo tricks (``https://ours@evil``) and any other
    origin: the classic open-redirect payloads.
    """
    if not target or len(target) > MAX_TARGET:
        return default
    if any(ord(ch) < 0x20 or ch in "\\\x7f" for ch in target):
        return default
    try:
        parts = urlsplit(target)
    except ValueError:  # e.g. an unbalanced "[" in the host
        return default
    query = f"?{parts.query}" if parts.query else ""
    if parts.scheme or parts.netloc:
        if parts.username is not None or parts.password is not None:
            return default
        here = f"{parts.scheme}://{parts.netloc}".lower()
        if here == _origin(origin):
            return (parts.path or "/") + query
        if here in {_origin(o) for o in also}:
            return f"{here}{parts.path or '/'}{query}"
        return default
    if not target.startswith("/") or target.startswith("//"):
        return default
    return (parts.path or "/") + query


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
