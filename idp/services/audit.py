"""The audit log: every security decision, chained by hashes so an edit shows.

Each row's ``hash`` is SHA-256 over the previous row's hash and this row's canonical JSON.
Appends are serialised by updating the single ``audit_head`` row first: on PostgreSQL that
row lock makes a concurrent append wait for our commit and then see our tip; on SQLite the
update takes the database's write lock. ``verify`` walks the chain and names the first row
that does not match, whether it was edited, deleted or inserted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Generator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update

from idp.extensions import db
from idp.models import AuditEvent, AuditHead

GENESIS = "0" * 64


@dataclass(frozen=True)
class Origin:
    """Where an action came from: a browser (IP, user agent) or the command line."""

    ip: str | None = None
    user_agent: str | None = None


CLI = Origin(ip=None, user_agent="bascule-cli")


@dataclass(frozen=True)
class Actor:
    """Who acted; None fields for anonymous attempts."""

    id: str | None = None
    email: str | None = None


ANONYMOUS = Actor()


def record(
    event: str,
    *,
    outcome: str = "success",
    actor: Actor = ANONYMOUS,
    org_id: str | None = None,
    target: str | None = None,
    origin: Origin = CLI,
    details: dict[str, Any] | None = None,
    now: float | None = None,
) -> AuditEvent:
    """Append one event and commit it, together with whatever the caller changed with it."""
    head_seq, prev_hash = db.session.execute(
        update(AuditHead)
        .where(AuditHead.id == 1)
        .values(seq=AuditHead.seq + 1)
        .returning(AuditHead.seq, AuditHead.hash)
        .execution_options(synchronize_session=False)
    ).one()
    when = datetime.fromtimestamp(now, UTC) if now is not None else datetime.now(UTC)
    entry = AuditEvent(
        seq=head_seq,
        time=when,
        event=event,
        outcome=outcome,
        actor_id=actor.id,
        actor_email=_text(actor.email, 254),
        org_id=org_id,
        target=_text(target, 254),
        ip=origin.ip,
        user_agent=_text(origin.user_agent or None, 512),
        details=details or {},
        prev_hash=prev_hash,
    )
    entry.hash = chain_hash(prev_hash, entry)
    # Written as plain statements, not through the unit of work: the same rows for a fraction
    # of the cost, and every token issued pays it.
    db.session.execute(insert(AuditEvent).values(**_columns(entry)))
    db.session.execute(
        update(AuditHead)
        .where(AuditHead.id == 1)
        .values(hash=entry.hash)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return entry


def _columns(entry: AuditEvent) -> dict[str, Any]:
    return {column.key: getattr(entry, column.key) for column in AuditEvent.__table__.columns}


def _text(value: str | None, limit: int) -> str | None:
    """Client-supplied text as every database takes it: PostgreSQL refuses NUL in text columns,
    and a refused row would lose the event and turn a bad request into a 500."""
    if value is None:
        return None
    return value.replace("\x00", "\ufffd")[:limit]


def ensure_head() -> None:
    """Create the chain's tip row on a new database (idempotent)."""
    if db.session.get(AuditHead, 1) is None:
        db.session.add(AuditHead(id=1, seq=0, hash=GENESIS))
        db.session.commit()


def as_dict(entry: AuditEvent) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "time": entry.time.astimezone(UTC).isoformat(timespec="microseconds"),
        "event": entry.event,
        "outcome": entry.outcome,
        "actor_id": entry.actor_id,
        "actor_email": entry.actor_email,
        "org_id": entry.org_id,
        "target": entry.target,
        "ip": entry.ip,
        "user_agent": entry.user_agent,
        "details": entry.details or {},
    }


def chain_hash(prev_hash: str, entry: AuditEvent) -> str:
    body = json.dumps(as_dict(entry), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def events(since: datetime | None = None, batch: int = 1000) -> Generator[AuditEvent, None, None]:
    """All events in order, streamed in batches so an export of millions stays small in memory."""
    query = select(AuditEvent).order_by(AuditEvent.seq)
    if since is not None:
        query = query.where(AuditEvent.time >= since)
    result = db.session.scalars(query.execution_options(yield_per=batch))
    try:
        yield from result
    finally:
        result.close()  # a caller that stops early must not leave a server-side cursor open


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None


def verify() -> Verification:
    """Walk the chain from the start; report the first row that breaks it."""
    prev_hash, expected_seq, checked = GENESIS, 1, 0
    with closing(events()) as stream:
        for entry in stream:
            if entry.seq != expected_seq:
                return Verification(False, checked, expected_seq, "row missing")
            if entry.prev_hash != prev_hash:
                return Verification(False, checked, entry.seq, "previous hash does not match")
            if chain_hash(prev_hash, entry) != entry.hash:
                return Verification(False, checked, entry.seq, "row content was changed")
            prev_hash, expected_seq, checked = entry.hash, expected_seq + 1, checked + 1
    head = db.session.get(AuditHead, 1)
    if head is not None and (head.seq != checked or head.hash != prev_hash):
        return Verification(False, checked, checked + 1, "rows removed from the end")
    return Verification(True, checked)
