"""Where we may send a browser after sign-in: only back to our own origin."""

from __future__ import annotations

from urllib.parse import urlsplit


def safe_next(target: str | None, origin: str, default: str = "/account") -> str:
    """Return ``target`` if it is a path on ``origin`` (or a same-origin URL), else ``default``.

    Refuses scheme-relative (``//evil``), backslash (``/\\evil``, which browsers read as
    ``//evil``), control characters and any other origin: the classic open-redirect payloads.
    """
    if not target or len(target) > 2048:
        return default
    if any(ord(ch) < 0x20 or ch == "\\" for ch in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        allowed = urlsplit(origin)
        if (parts.scheme, parts.netloc) != (allowed.scheme, allowed.netloc):
            return default
    elif not target.startswith("/") or target.startswith("//"):
        return default
    path = parts.path or "/"
    return path + (f"?{parts.query}" if parts.query else "")
