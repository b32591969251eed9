"""The hash-chained audit log: appends, concurrent appends, and tamper detection."""

from __future__ import annotations

import threading

import httpx
import pytest
import sqlalchemy.exc
from sqlalchemy import text

from idp.extensions import db
from idp.models import AuditEvent
from idp.services import audit
from idp.services.audit import Actor, Origin
from tests.support import STRONG_PASSWORD, make_user, sign_in


def _tamper(statement: str, **params: object) -> None:
    """Edit the log as a database superuser would: on PostgreSQL, with triggers switched off
    (past the append-only trigger), so that the hash chain is what must catch it."""
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("SET LOCAL session_replication_role = replica"))
    db.session.execute(text(statement), params)
    db.session.commit()


def _events() -> list[AuditEvent]:
    return list(db.session.scalars(db.select(AuditEvent).order_by(AuditEvent.seq)))


def test_sign_in_activity_is_recorded_with_who_where_and_when(
    app, browser_client: httpx.Client
) -> None:
    user = make_user(app)
    sign_in(browser_client, "jane@acme.test", "wrong password here")
    sign_in(browser_client, "jane@acme.test", STRONG_PASSWORD)
    failure, success = _events()[-2:]
    assert (failure.event, failure.outcome, failure.details) == (
        "login.failure", "failure", {"reason": "bad_password"},
    )  # fmt: skip
    assert (success.event, success.actor_id, success.ip) == ("login.success", user.id, "127.0.0.1")
    assert success.user_agent and "python-httpx" in success.user_agent
    assert audit.verify().ok


def test_edited_row_is_caught(app) -> None:
    for n in range(5):
        audit.record("test.event", target=f"t{n}", origin=Origin("10.0.0.1", "ua"))
    assert audit.verify().ok
    victim = _events()[2]
    _tamper("UPDATE audit_events SET target = 'forged' WHERE seq = :seq", seq=victim.seq)
    db.session.expire_all()
    result = audit.verify()
    assert not result.ok
    assert result.first_bad_seq == victim.seq
    assert result.problem == "row content was changed"


def test_deleted_rows_are_caught(app) -> None:
    for n in range(4):
        audit.record("test.event", target=f"t{n}")
    seqs = [e.seq for e in _events()]
    _tamper("DELETE FROM audit_events WHERE seq = :s", s=seqs[1])
    assert audit.verify().first_bad_seq == seqs[1]


def test_truncated_tail_is_caught(app) -> None:
    for n in range(4):
        audit.record("test.event", target=f"t{n}")
    _tamper("DELETE FROM audit_events WHERE seq >= 3")
    result = audit.verify()
    assert not result.ok and result.problem == "rows removed from the end"


def test_concurrent_appends_keep_one_chain(app) -> None:
    """Writers in parallel (separate connections) never fork the chain or reuse a seq."""
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with app.app_context():
                for i in range(10):
                    audit.record("test.concurrent", actor=Actor(email=f"w{n}"), target=str(i))
                db.session.remove()
        except BaseException as exc:  # report in the main thread
            errors.append(exc)

    before = len(_events())  # what setting up the instance recorded
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    db.session.expire_all()
    assert [e.seq for e in _events()] == list(range(1, before + 41))
    assert audit.verify().ok


# SQLite has no privilege split for a trigger to enforce: there the hash chain alone stands.
@pytest.mark.parametrize("backend", ["postgres+redis"], indirect=True)
def test_postgresql_refuses_changes_to_the_log(app) -> None:
    """The application's own connection cannot rewrite or delete history on PostgreSQL."""
    audit.record("test.event", target="t")
    for statement in [
        "UPDATE audit_events SET target = 'forged'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ]:
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"):
            db.session.execute(text(statement))
        db.session.rollback()
    assert audit.verify().ok
