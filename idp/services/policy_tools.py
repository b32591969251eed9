"""What-if tools for the gateway policy: which rule a request meets and what it decides, and
which past decisions a proposed policy would change (replayed from the audit log)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from gateway import paths
from gateway.policy import Decision, Identity, Policy
from idp.services import active_org, audit, orgs, users
from idp.services.errors import ServiceError


@dataclass(frozen=True)
class Check:
    method: str
    path: str
    decision: Decision
    permissions: frozenset[str] | None  # None: no session


def check(
    policy: Policy,
    method: str,
    url: str,
    email: str | None,
    *,
    amr: tuple[str, ...],
    auth_age: float,
    ip: str | None,
    now: float,
) -> Check:
    """Judge one request as the gateway would, for ``email`` signed in ``auth_age`` seconds
    ago with ``amr`` (or for nobody)."""
    try:
        target = paths.normalise(urlsplit(url)._replace(scheme="", netloc="").geturl() or "/")
    except paths.AmbiguousPath as exc:
        raise ServiceError(f"The gateway refuses this URL (400): {exc.reason}.") from None
    identity = None
    held = None
    if email:
        user = users.get_by_email(email)
        org = orgs.get(policy.upstream.org)
        held = active_org.held_in(user, org.id) if user.is_active else frozenset()
        identity = Identity(held, amr, now - auth_age)
    decision = policy.decide(method.upper(), target.path, ip, identity, now)
    return Check(method.upper(), target.path, decision, held)


@dataclass(frozen=True)
class Change:
    time: datetime
    who: str | None
    method: str
    path: str
    before: str
    after: str
    rule_line: int | None
    reason: str


def replay(policy: Policy, since: datetime | None) -> tuple[int, list[Change]]:
    """Run the gateway decisions recorded since ``since`` through ``policy``; returns how many
    were replayed and those whose result would change."""
    replayed, changes = 0, []
    for entry in audit.events(since):
        if entry.event != "gateway.decision":
            continue
        details: dict[str, Any] = entry.details or {}
        if not details.get("method") or not details.get("path"):
            continue
        replayed += 1
        identity = None
        if details.get("permissions") is not None:
            identity = Identity(
                frozenset(details["permissions"]),
                tuple(details.get("amr") or ()),
                float(details.get("auth_time") or 0),
            )
        when = entry.time.timestamp()
        decision = policy.decide(details["method"], details["path"], entry.ip, identity, when)
        if decision.outcome.value != details.get("result"):
            changes.append(
                Change(
                    entry.time,
                    entry.actor_email,
                    details["method"],
                    details["path"],
                    str(details.get("result")),
                    decision.outcome.value,
                    decision.line,
                    decision.reason,
                )
            )
    return replayed, changes
