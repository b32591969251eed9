"""The user's permission set per organisation, cached in the shared store for the gateway.

The gateway must see a removed permission on the very next request, yet read the set in the
same single store round trip as the session. So each cached set is tagged with its
organisation's version, and the IdP bumps that version after every committed change to the
organisation's roles or memberships. A set whose tag is not the current version is stale and
is computed afresh by the IdP. The version is read before the set is computed, so a change
committed while it was being computed leaves it stale, never wrongly fresh.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

VALUE_TTL_SECONDS = 3600


def version_key(org_id: str) -> str:
    return f"permver:{org_id}"


def value_key(org_id: str, user_id: str) -> str:
    return f"perms:{org_id}:{user_id}"


def encode(version: str | None, permissions: Iterable[str]) -> str:
    return json.dumps({"v": version or "0", "p": sorted(permissions)})


def decode(raw: str | None, version: str | None) -> frozenset[str] | None:
    """The cached set if it was computed at ``version``; None if missing or stale."""
    if raw is None:
        return None
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(entry, dict) or entry.get("v") != (version or "0"):
        return None
    return frozenset(str(p) for p in entry.get("p", []))
