"""What the gateway's audit trail keeps of its decisions (gateway/decisions.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from gateway.decisions import ALLOW_SAMPLE_EVERY, MAX_SAMPLED_ALLOWS, AuditTrail
from gateway.identity import Caller
from gateway.policy import Decision, Outcome

CALLER = Caller("u1", "u1@example.test", "sid", frozenset({"messages.send"}), ("pwd",), 0.0)


def test_every_denial_and_a_bounded_sample_of_allows_with_a_count_of_all() -> None:
    idp: Any = SimpleNamespace(org_id="org")
    trail = AuditTrail(idp)
    allow, deny = Decision(Outcome.ALLOW, "permitted"), Decision(Outcome.DENY, "missing x")
    allows = ALLOW_SAMPLE_EVERY * (MAX_SAMPLED_ALLOWS + 50)
    for _ in range(allows):
        trail.note(allow, "GET", "/inbox", "127.0.0.1", CALLER)
    for _ in range(30):
        trail.note(deny, "GET", "/billing", "127.0.0.1", CALLER)
    results = [event["details"]["result"] for event in trail.queue]
    assert results.count("allow") == MAX_SAMPLED_ALLOWS and results.count("deny") == 30
    assert trail.allowed["u1"] == allows
