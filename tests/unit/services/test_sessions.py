"""Session ids survive rotation; a revoked session stays revoked whatever writes race it."""

from __future__ import annotations

from idp.common.store import Store
from idp.services import sessions
from idp.services.sessions import Limits, SessionRecord

LIMITS = Limits(idle_seconds=1800, absolute_seconds=43200)


def _saved(store: Store, uid: str = "u-1") -> tuple[str, SessionRecord]:
    token = sessions.new_token()
    record = SessionRecord(created=1000.0, last_seen=1000.0, uid=uid)
    assert sessions.save(store, token, record, 1000.0, LIMITS, new=True)
    return token, record


def test_rotation_keeps_the_id_and_retires_the_old_secret(any_store: Store) -> None:
    token, record = _saved(any_store)
    rotated = sessions.rotated(token)
    assert sessions.session_id(rotated) == sessions.session_id(token) and rotated != token
    assert sessions.save(any_store, rotated, record, 1001.0, LIMITS, new=False)
    assert sessions.load(any_store, rotated, 1001.0, LIMITS) is not None
    assert sessions.load(any_store, token, 1001.0, LIMITS) is None  # the old cookie is dead


def test_a_write_after_revocation_does_not_bring_the_session_back(any_store: Store) -> None:
    token, record = _saved(any_store)
    sessions.destroy(any_store, sessions.session_id(token), record.uid)
    assert not sessions.save(any_store, token, record, 1001.0, LIMITS, new=False)
    assert sessions.load(any_store, token, 1001.0, LIMITS) is None


def test_malformed_and_forged_cookies_load_nothing(any_store: Store) -> None:
    token, _ = _saved(any_store)
    sid = sessions.session_id(token)
    for cookie in ("", "x" * 300, sid, f"{sid}.", f"{sid}.{'A' * 43}", token.upper()):
        assert sessions.load(any_store, cookie, 1001.0, LIMITS) is None
