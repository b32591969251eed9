"""The pending sign-in record: expiry, stage and tampering are all refused."""

from __future__ import annotations

from idp.services import login_state


def test_a_pending_sign_in_loads_at_its_stage_until_it_expires() -> None:
    pending = login_state.start("u1", "o1", login_state.SECOND_FACTOR, ["totp"], "/account", 1000)
    raw = pending.as_dict()
    assert login_state.load(raw, login_state.SECOND_FACTOR, 1000 + 299) == pending
    assert login_state.load(raw, login_state.SECOND_FACTOR, 1000 + 300) is None
    assert login_state.load(raw, login_state.ENROL, 1000) is None


def test_garbage_is_no_pending_sign_in() -> None:
    for raw in (None, "x", [], {"uid": "u1"}, {"unexpected": 1}):
        assert login_state.load(raw, login_state.SECOND_FACTOR, 0) is None


def test_failures_are_counted_up_to_the_limit() -> None:
    pending = login_state.start("u1", None, login_state.SECOND_FACTOR, ["totp"], "/", 0)
    results = [login_state.record_failure(pending) for _ in range(login_state.MAX_FAILURES)]
    assert results == [False] * (login_state.MAX_FAILURES - 1) + [True]
