"""Reading the audit log for one organisation: filtered, paginated, exported. Read-only.

An organisation's admins see the events of their organisation (``org_id``) and the account
events (sign-ins, password changes, which carry no organisation) of its current members; they
never see another organisation's events. Every function requires ``audit.read`` through
``authz``, so the console, the API and any future caller apply the same rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, cast, func, or_, select

from idp.common.permissions import AUDIT_READ
from idp.extensions import db
from idp.models import AuditEvent, Membership, User
from idp.services import audit, authz
from idp.services.audit import Origin
from idp.services.authz import Principal

MAX_PER_PAGE = 200
MAX_TEXT = 200


@dataclass(frozen=True)
class Page:
    """One page of events, newest first, and how many match in all."""

    items: list[AuditEvent]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def search(
    principal: Principal,
    *,
    actor: str | None = None,
    event: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    text: str | None = None,
    page: int = 1,
    per_page: int = 50,
) -> Page:
    """Events matching every filter given, newest first.

    ``actor``: part of the actor's email (case-insensitive). ``event``: an event name, or a
    family without a dot ("login" matches "login.failure"). ``since`` inclusive, ``until``
    exclusive (both timezone-aware). ``text``: part of the event, actor, target, IP address,
    user agent or details.
    """
    authz.require(principal, AUDIT_READ)
    page, per_page = max(1, page), min(max(1, per_page), MAX_PER_PAGE)
    query = _filtered(principal, actor, event, since, until, text)
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = db.session.scalars(
        query.order_by(AuditEvent.seq.desc()).offset((page - 1) * per_page).limit(per_page)
    ).all()
    return Page(list(items), total, page, per_page)


def event_types(principal: Principal) -> list[str]:
    """The event names that occur in this organisation's log (for a filter's choices)."""
    authz.require(principal, AUDIT_READ)
    query = select(AuditEvent.event).where(_scope(principal)).distinct()
    return sorted(db.session.scalars(query))


def export(
    principal: Principal,
    *,
    origin: Origin,
    now: float,
    actor: str | None = None,
    event: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    text: str | None = None,
) -> Iterator[dict[str, Any]]:
    """The matching events oldest first, with their chain hashes, for a JSON-lines download.

    Checked and audited now, when called, not when the caller starts reading: a refusal must
    come before a streamed response has begun. Reading the log in bulk is itself an event.
    """
    authz.require(principal, AUDIT_READ)
    filters = {"actor": actor, "event": event, "text": text}
    filters |= {"since": since.isoformat() if since else None}
    filters |= {"until": until.isoformat() if until else None}
    audit.record(
        "audit.export",
        actor=principal.actor,
        org_id=principal.org.id,
        target=principal.org.slug,
        origin=origin,
        details={k: v for k, v in filters.items() if v},
        now=now,
    )
    query = _filtered(principal, actor, event, since, until, text).order_by(AuditEvent.seq)

    def rows() -> Iterator[dict[str, Any]]:
        result = db.session.scalars(query.execution_options(yield_per=500))
        try:
            for entry in result:
                yield audit.as_dict(entry) | {"prev_hash": entry.prev_hash, "hash": entry.hash}
        finally:
            result.close()  # a client that disconnects must not leave a cursor open

    return rows()


def _scope(principal: Principal) -> ColumnElement[bool]:
    """This organisation's events, and the account events of its current members."""
    org_id = principal.org.id
    member_ids = select(Membership.user_id).where(Membership.org_id == org_id)
    member_emails = select(User.email).join(Membership).where(Membership.org_id == org_id)
    account_event = and_(
        AuditEvent.org_id.is_(None),
        or_(
            AuditEvent.actor_id.in_(member_ids),
            AuditEvent.actor_email.in_(member_emails),
            AuditEvent.target.in_(member_emails),
        ),
    )
    return or_(AuditEvent.org_id == org_id, account_event)


def _filtered(
    principal: Principal,
    actor: str | None,
    event: str | None,
    since: datetime | None,
    until: datetime | None,
    text: str | None,
) -> Select[AuditEvent]:
    query = select(AuditEvent).where(_scope(principal))
    if actor:
        query = query.where(AuditEvent.actor_email.ilike(_contains(actor), escape="\\"))
    if event:
        event = event.strip()[:63]
        if "." in event:
            query = query.where(AuditEvent.event == event)
        else:
            query = query.where(AuditEvent.event.like(_escape(event) + ".%", escape="\\"))
    if since is not None:
        query = query.where(AuditEvent.time >= since)
    if until is not None:
        query = query.where(AuditEvent.time < until)
    if text:
        pattern = _contains(text)
        columns = [
            AuditEvent.event,
            AuditEvent.actor_email,
            AuditEvent.target,
            AuditEvent.ip,
            AuditEvent.user_agent,
            cast(AuditEvent.details, String),
        ]
        query = query.where(or_(*(c.ilike(pattern, escape="\\") for c in columns)))
    return query


def _escape(value: str) -> str:
    """Literal text for LIKE: a search for "100%" must not match everything."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(value: str) -> str:
    # NUL would make PostgreSQL refuse the query with an error instead of "no match".
    return "%" + _escape(value.replace("\x00", "").strip()[:MAX_TEXT]) + "%"
