"""One canonical form of a request target, so the policy checks the path the upstream serves.

Every path-confusion bypass (``/%2e%2e/billing``, ``//billing``, ``/billing;x=1``, ``%2f``
inside a segment, ``\\`` read as ``/`` by some servers) works because the proxy matched one
string and the upstream routed another. So the gateway matches the *normalised* path and
forwards that same string, never the raw one, and refuses every encoding that two servers
could reasonably read differently: a 400 for an odd request costs little, a wrong guess costs
an authorisation bypass.

Canonical form: percent-escapes of unreserved characters (RFC 3986 2.3) decoded, every other
escape in upper case, dot segments resolved (RFC 3986 5.2.4, after decoding, so ``%2e%2e`` is
``..``), repeated slashes collapsed; a trailing slash is kept.

Refused (:class:`AmbiguousPath`): a target not in origin form (absolute-form, ``*``), raw or
encoded ``\\``, encoded ``/`` and ``%`` (double encoding), raw or encoded ``;`` (path
parameters: Tomcat and Spring strip them, others do not), control characters and NUL raw or
encoded, raw non-ASCII, a fragment, malformed escapes (``%2``, ``%u002e``), escapes that are not
valid UTF-8 (overlong ``%C0%AE`` is a dot to some decoders), ``..`` above the root, and a
segment ending in ``.`` or a space (Windows and IIS drop those, so ``/billing.`` would be
``/billing`` to them).
"""

from __future__ import annotations

import re
from typing import NamedTuple

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

# Characters RFC 3986 does not allow raw in a path but browsers send raw (the WHATWG URL
# standard leaves them alone). They mean the same as their escapes, so they are escaped.
_ESCAPE_RAW = re.compile(r"[\"<>\[\]^`{|}]")
# What may remain raw: pchar without ";" (path parameters), plus "/" and "%" for escapes.
_RAW_OK = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,=:@/%]*")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Query: any visible ASCII but "#" (a fragment is never sent); escapes are the upstream's business.
_QUERY_OK = re.compile(r"[!-\"$-~]*")
# Paths already in canonical form skip the slower steps: the common case on every request.
# A segment here has no escape, is not empty, and neither starts nor ends with a dot.
_SEGMENT = r"[A-Za-z0-9\-_~!$&'()*+,=:@]+(?:\.+[A-Za-z0-9\-_~!$&'()*+,=:@]+)*"
_SIMPLE = re.compile(rf"(?:/{_SEGMENT})*/?")

_FORBIDDEN_ESCAPES = {
    0x25: "an encoded '%' (double encoding)",
    0x2F: "an encoded '/'",
    0x3B: "an encoded ';' (path parameter)",
    0x5C: "an encoded backslash",
}


class AmbiguousPath(ValueError):
    """A request target that servers may read differently; answer 400, never guess."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Target(NamedTuple):
    """A normalised request target: forward ``path`` (and ``query``), never the raw target."""

    path: str
    query: str


def normalise(raw: bytes | str) -> Target:
    """The canonical form of ``raw`` (origin-form path, optional ``?query``), or AmbiguousPath."""
    if isinstance(raw, bytes):
        if not raw.isascii():
            raise AmbiguousPath("raw non-ASCII byte in the request target")
        raw = raw.decode("ascii")
    elif not raw.isascii():
        raise AmbiguousPath("raw non-ASCII character in the request target")
    path, _, query = raw.partition("?")
    if not _QUERY_OK.fullmatch(query):
        raise AmbiguousPath("control character, space or fragment in the query")
    if not path.startswith("/"):
        raise AmbiguousPath("the request target does not start with '/'")
    if _SIMPLE.fullmatch(path):
        return Target(path, query)
    return Target(_normalise_path(path), query)


def _normalise_path(path: str) -> str:
    path = _ESCAPE_RAW.sub(lambda m: f"%{ord(m[0]):02X}", path)
    if not _RAW_OK.fullmatch(path):
        raise AmbiguousPath(_describe_raw(path))
    if _BAD_ESCAPE.search(path):
        raise AmbiguousPath("malformed percent-escape")
    high = False

    def decode(match: re.Match[str]) -> str:
        nonlocal high
        code = int(match[1], 16)
        if code < 0x20 or code == 0x7F:
            raise AmbiguousPath("an encoded control character")
        if code in _FORBIDDEN_ESCAPES:
            raise AmbiguousPath(_FORBIDDEN_ESCAPES[code])
        char = chr(code)
        if char in _UNRESERVED:
            return char
        high = high or code >= 0x80
        return "%" + match[1].upper()

    path = _ESCAPE.sub(decode, path)
    if high:
        _check_utf8(path)
    return _resolve(path)


def _check_utf8(path: str) -> None:
    """Escapes must spell valid UTF-8: overlong forms such as %C0%AE are dots to lax decoders."""
    data = _ESCAPE.sub(lambda m: chr(int(m[1], 16)), path).encode("latin-1")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise AmbiguousPath("percent-escapes that are not valid UTF-8") from None


def _resolve(path: str) -> str:
    """Remove dot segments and empty segments; climbing above the root is refused, not clamped."""
    parts = path[1:].split("/")
    out: list[str] = []
    for segment in parts:
        if segment == "..":
            if not out:
                raise AmbiguousPath("'..' climbs above the root")
            out.pop()
        elif segment not in ("", "."):
            if segment.endswith((".", "%20")):
                raise AmbiguousPath("a path segment ends with '.' or a space")
            out.append(segment)
    trailing = parts[-1] in ("", ".", "..")
    return "/" + "/".join(out) + ("/" if trailing and out else "")


def _describe_raw(path: str) -> str:
    """Name the first character that made ``path`` ambiguous, for the 400 page and the log."""
    char = next(c for c in path if not _RAW_OK.fullmatch(c))
    if char == "\\":
        return "a backslash in the path"
    if char == ";":
        return "a ';' path parameter"
    if char == "#":
        return "a fragment in the request target"
    return f"character {char!r} in the path"
