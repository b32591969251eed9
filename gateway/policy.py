"""The gateway policy: a TOML file validated at start, and a pure ``decide`` for every request.

Format (DESIGN.md "Gateway policy"): ``[upstream]`` with ``url``, ``name``, ``org``; then
``[[route]]`` tables, the first that matches wins, and no match is a deny. A mistake in the file
stops the gateway with the file and line named, because a policy that loads with a typo in
it (``permision = ...``) would guard nothing.

Matching rules, each chosen to fail towards the stricter route:

- ``path`` is a glob over the *normalised* path (:mod:`gateway.paths`): ``*`` is one segment
  (or part of one, as in ``*.css``), ``**`` any number of segments. A trailing slash is
  optional on both sides, so ``/billing`` and ``/billing/`` meet the same route, and
  ``/billing/**`` also covers ``/billing`` itself.
- Matching ignores ASCII case. The demo upstream (Flask) routes case-sensitively, but many
  servers (Express by default, IIS) do not; matching ``/BILLING`` against the billing route
  costs nothing on a case-sensitive upstream (it answers 404) and closes the bypass on the others.
- A route listing ``GET`` also matches ``HEAD``: upstreams answer HEAD with the GET handler, so
  a HEAD must not fall through to a later, weaker route.

Step-up factors name what the IdP writes in the session's ``amr`` (RFC 8176), see
:data:`FACTOR_AMR`. The IdP records a recovery code as ``otp``, the same as TOTP, so the gateway
cannot tell them apart and refuses ``"recovery"`` rather than pretend it can. ``mfa = true`` needs
``mfa`` in ``amr``; a federated (SAML, ``ext``) sign-in never has it.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from idp.common import permissions

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

FACTOR_AMR: dict[str, frozenset[str]] = {
    "totp": frozenset({"otp"}),  # also a recovery code: the IdP records both as "otp"
    "webauthn": frozenset({"hwk", "swk"}),  # a device-bound key or a synced passkey
}
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ACCESS_KEYS = ("public", "authenticated", "permission", "permissions")
STEP_UP_KEYS = ("mfa", "factors", "max_auth_age")
ROUTE_KEYS = frozenset({"path", "methods", "allow_cidrs", *ACCESS_KEYS, *STEP_UP_KEYS})
UPSTREAM_KEYS = frozenset({"url", "name", "org"})
GATEWAY_PREFIX = "/_bascule"

# Literals are unreserved characters only: those are always decoded in a normalised path, so a
# literal has one spelling there. "!" would also be "%21", and ``/a%21`` would slip past ``/a!``.
_GLOB_SEGMENT = re.compile(r"[A-Za-z0-9\-._~*]+")
_DURATION = re.compile(r"([1-9][0-9]*)([smh])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


class PolicyError(ValueError):
    """The policy file is wrong; the message names the file and, where known, the line."""


class Outcome(StrEnum):
    ALLOW = "allow"
    DENY = "deny"  # 403
    LOGIN = "login"  # no session: 401, or a redirect to sign in
    STEP_UP = "step_up"  # a session, but re-authentication or a stronger factor is needed


@dataclass(frozen=True, slots=True)
class Identity:
    """What the policy needs to know of a live session, read fresh from the store."""

    permissions: frozenset[str]
    amr: tuple[str, ...]
    auth_time: float


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where allowed requests go; ``name`` is the assertion's ``aud``, ``org`` whose roles count."""

    url: str
    name: str
    org: str


@dataclass(frozen=True, slots=True)
class Route:
    """One ``[[route]]``; ``index`` counts from 0 in file order, ``line`` is its header's line."""

    index: int
    line: int | None
    path: str
    methods: frozenset[str] | None
    public: bool
    permissions: frozenset[str]
    mfa: bool
    factors: tuple[str, ...]
    max_auth_age: int | None
    allow_cidrs: tuple[IPNetwork, ...]
    pattern: re.Pattern[str] = field(repr=False)
    accepted_amr: frozenset[str] = field(repr=False)

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return self.pattern.fullmatch(path) is not None


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome, a short reason for the log and the 403 page, and the route that decided."""

    outcome: Outcome
    reason: str
    route: Route | None = None

    @property
    def index(self) -> int | None:
        return None if self.route is None else self.route.index

    @property
    def line(self) -> int | None:
        return None if self.route is None else self.route.line


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated policy: routes in file order, their globs compiled once at load."""

    source: str
    upstream: Upstream
    routes: tuple[Route, ...]

    def match(self, method: str, path: str) -> Route | None:
        """The first route for ``method`` and the normalised ``path``, or None."""
        method = method.upper()  # as upstreams read it (Werkzeug upper-cases the method)
        return next((r for r in self.routes if r.matches(method, path)), None)

    def decide(
        self,
        method: str,
        path: str,
        client_ip: IPAddress | str | None,
        identity: Identity | None,
        now: float,
    ) -> Decision:
        """Allow, deny, ask to sign in or to step up, for a request whose path is normalised.

        Permissions are checked before step-up, so nobody re-authenticates only to be refused.
        """
        route = self.match(method, path)
        if route is None:
            return Decision(Outcome.DENY, "no route matches")
        if route.allow_cidrs and not _ip_allowed(client_ip, route.allow_cidrs):
            return Decision(Outcome.DENY, "client address outside allow_cidrs", route)
        if route.public:
            return Decision(Outcome.ALLOW, "public", route)
        if identity is None:
            return Decision(Outcome.LOGIN, "no session", route)
        missing = route.permissions - identity.permissions
        if missing:
            return Decision(Outcome.DENY, f"missing {', '.join(sorted(missing))}", route)
        if route.mfa and "mfa" not in identity.amr:
            return Decision(Outcome.STEP_UP, "needs a second factor", route)
        if route.accepted_amr and route.accepted_amr.isdisjoint(identity.amr):
            return Decision(Outcome.STEP_UP, f"needs {' or '.join(route.factors)}", route)
        if route.max_auth_age is not None and now - identity.auth_time > route.max_auth_age:
            return Decision(Outcome.STEP_UP, f"needs sign-in within {route.max_auth_age}s", route)
        return Decision(Outcome.ALLOW, "permitted", route)


def _ip_allowed(client_ip: IPAddress | str | None, networks: tuple[IPNetwork, ...]) -> bool:
    """Whether the client is inside one of ``networks``; an unknown or unparsable address is not."""
    if client_ip is None:
        return False
    try:
        ip = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    # A dual-stack listener shows an IPv4 client as ::ffff:a.b.c.d; the IPv4 rule must apply.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def load(path: str | Path) -> Policy:
    """Read and validate the policy file at ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read the policy: {exc}") from exc
    return parse(text, str(path))


def parse(text: str, source: str = "<policy>") -> Policy:
    """Validate policy ``text``; ``source`` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{source}: {exc}") from exc
    lines = _Lines(text, source)
    unknown = set(data) - {"upstream", "route"}
    if unknown:
        key = sorted(unknown)[0]
        raise lines.error(lines.top_level_line(key), f"unknown key {key!r}")
    upstream = _upstream(data.get("upstream"), lines)
    raw_routes = data.get("route")
    if not isinstance(raw_routes, list) or not raw_routes:
        raise lines.error(None, "no [[route]]: every request would be denied")
    headers = lines.headers("route")
    if len(headers) != len(raw_routes):  # routes written as inline tables: no header lines
        headers = [None] * len(raw_routes)
    routes = tuple(
        _route(index, raw, line, lines)
        for index, (raw, line) in enumerate(zip(raw_routes, headers, strict=True))
    )
    return Policy(source, upstream, routes)


class _Lines:
    """Line numbers for errors: tomllib gives none, so headers and keys are found in the text."""

    def __init__(self, text: str, source: str) -> None:
        self.lines = text.splitlines()
        self.source = source

    def error(self, line: int | None, message: str) -> PolicyError:
        where = self.source if line is None else f"{self.source} line {line}"
        return PolicyError(f"{where}: {message}")

    def headers(self, name: str) -> list[int | None]:
        header = re.compile(rf"\s*\[\[\s*{name}\s*\]\]")
        return [n for n, text in enumerate(self.lines, 1) if header.match(text)]

    def table_line(self, name: str) -> int | None:
        header = re.compile(rf"\s*\[\s*{name}\s*\]")
        return next((n for n, text in enumerate(self.lines, 1) if header.match(text)), None)

    def top_level_line(self, key: str) -> int | None:
        """The line of a top-level ``key = ...``, ``[key]`` or ``[[key]]``."""
        found = re.compile(rf"\s*(?:\[\[?\s*)?[\"']?{re.escape(key)}[\"']?\s*[=.\]]")
        return next((n for n, text in enumerate(self.lines, 1) if found.match(text)), None)

    def key_line(self, key: str, start: int | None, fallback: int | None) -> int | None:
        """The line of ``key = ...`` in the table starting at line ``start``, else ``fallback``."""
        if start is None:
            return fallback
        assignment = re.compile(rf"\s*[\"']?{re.escape(key)}[\"']?\s*[=.]")
        for n in range(start, len(self.lines) + 1):
            text = self.lines[n - 1]
            if n > start and text.lstrip().startswith("["):
                break
            if assignment.match(text):
                return n
        return fallback


def _upstream(raw: Any, lines: _Lines) -> Upstream:
    line = lines.table_line("upstream")
    if not isinstance(raw, dict):
        raise lines.error(line, "[upstream] with url, name and org is required")
    _no_unknown_keys(raw, UPSTREAM_KEYS, "[upstream]", line, lines)
    values = {}
    for key in ("url", "name", "org"):
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise lines.error(lines.key_line(key, line, line), f"upstream {key} must be a string")
        values[key] = value
    url = urlsplit(values["url"])
    if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
        where = lines.key_line("url", line, line)
        raise lines.error(where, "upstream url must be http(s)://host[:port][/path]")
    return Upstream(**values)


def _no_unknown_keys(
    raw: dict[str, Any], allowed: frozenset[str], what: str, line: int | None, lines: _Lines
) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        where = lines.key_line(unknown[0], line, line)
        raise lines.error(where, f"unknown key {unknown[0]!r} in {what}")


def _route(index: int, raw: Any, line: int | None, lines: _Lines) -> Route:
    if not isinstance(raw, dict):
        raise lines.error(line, f"route {index + 1} is not a table")
    _no_unknown_keys(raw, ROUTE_KEYS, "route", line, lines)

    def fail(message: str, key: str | None = None) -> PolicyError:
        where = line if key is None else lines.key_line(key, line, line)
        return lines.error(where, f"route {index + 1}: {message}")

    path = raw.get("path")
    if not isinstance(path, str):
        raise fail("path (a string) is required")
    try:
        pattern = compile_glob(path)
    except ValueError as exc:
        raise fail(str(exc), "path") from None

    access = [key for key in ACCESS_KEYS if key in raw]
    if len(access) != 1:
        found = " and ".join(access) if access else "none"
        raise fail(f"needs exactly one of {', '.join(ACCESS_KEYS)} (found {found})")
    public = access == ["public"]
    if access[0] in ("public", "authenticated") and raw[access[0]] is not True:
        raise fail(f"{access[0]} must be true (leave it out otherwise)", access[0])
    wanted = _permissions(raw, access[0], fail)
    step_up = [key for key in STEP_UP_KEYS if key in raw]
    if public and step_up:
        raise fail(f"a public route cannot ask for {step_up[0]}", step_up[0])

    mfa = raw.get("mfa", False)
    if not isinstance(mfa, bool):
        raise fail("mfa must be true or false", "mfa")
    factors = _string_list(raw, "factors", fail)
    for kind in factors:
        if kind not in FACTOR_AMR:
            hint = (
                " (the IdP records it as 'otp', like TOTP: use 'totp')"
                if kind == "recovery"
                else ""
            )
            known = ", ".join(sorted(FACTOR_AMR))
            raise fail(f"unknown factor {kind!r}{hint}; known: {known}", "factors")
    return Route(
        index=index,
        line=line,
        path=path,
        methods=_methods(raw, fail),
        public=public,
        permissions=wanted,
        mfa=mfa,
        factors=factors,
        max_auth_age=_duration(raw, fail),
        allow_cidrs=_networks(raw, fail),
        pattern=pattern,
        accepted_amr=frozenset(amr for kind in factors for amr in FACTOR_AMR[kind]),
    )


class _Fail(Protocol):
    """A route's error builder: ``fail(message, key)`` -> PolicyError at the key's line."""

    def __call__(self, message: str, key: str | None = None) -> PolicyError: ...


def _string_list(raw: dict[str, Any], key: str, fail: _Fail) -> tuple[str, ...]:
    if key not in raw:
        return ()
    value = raw[key]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise fail(f"{key} must be a non-empty list of strings", key)
    return tuple(value)


def _permissions(raw: dict[str, Any], access: str, fail: _Fail) -> frozenset[str]:
    if access == "permission":
        if not isinstance(raw["permission"], str):
            raise fail("permission must be a string", "permission")
        names: Iterable[str] = (raw["permission"],)
    elif access == "permissions":
        names = _string_list(raw, "permissions", fail)
    else:
        return frozenset()
    unknown = sorted(set(names) - permissions.ALL)
    if unknown:
        raise fail(f"unknown permission {unknown[0]!r}", access)
    return frozenset(names)


def _methods(raw: dict[str, Any], fail: _Fail) -> frozenset[str] | None:
    if "methods" not in raw:
        return None
    methods = {m.upper() for m in _string_list(raw, "methods", fail)}
    unknown = sorted(methods - METHODS)
    if unknown:
        raise fail(f"unknown method {unknown[0]!r}", "methods")
    if "GET" in methods:
        methods.add("HEAD")  # HEAD runs the GET handler upstream: it must meet the same route
    return frozenset(methods)


def _duration(raw: dict[str, Any], fail: _Fail) -> int | None:
    if "max_auth_age" not in raw:
        return None
    value = raw["max_auth_age"]
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise fail('max_auth_age must be a duration such as "30s", "5m" or "1h"', "max_auth_age")
    return int(match[1]) * _UNIT_SECONDS[match[2]]


def _networks(raw: dict[str, Any], fail: _Fail) -> tuple[IPNetwork, ...]:
    networks = []
    for text in _string_list(raw, "allow_cidrs", fail):
        try:
            networks.append(ipaddress.ip_network(text))
        except ValueError as exc:
            raise fail(f"allow_cidrs: {exc}", "allow_cidrs") from None
    return tuple(networks)


def compile_glob(glob: str) -> re.Pattern[str]:
    """A regex for a route glob over normalised paths; ValueError says what is wrong with it."""
    if not glob.startswith("/"):
        raise ValueError(f"path {glob!r} must start with '/'")
    if glob == GATEWAY_PREFIX or glob.startswith(GATEWAY_PREFIX + "/"):
        raise ValueError(f"{GATEWAY_PREFIX}/ belongs to the gateway and never reaches the policy")
    segments = glob[1:].split("/")
    if segments[-1] == "":
        segments.pop()  # the trailing slash is optional anyway
    regex = []
    for segment in segments:
        if segment == "**":
            regex.append("(?:/[^/]+)*")
        elif segment == "*":
            regex.append("/[^/]+")
        elif "**" in segment or not _GLOB_SEGMENT.fullmatch(segment) or segment.endswith("."):
            # A segment ending in "." never survives normalisation: the route could never match.
            raise ValueError(f"path {glob!r}: bad segment {segment!r}")
        else:
            regex.append("/" + "[^/]*".join(re.escape(part) for part in segment.split("*")))
    return re.compile("".join(regex) + "/?", re.IGNORECASE | re.ASCII)
