"""Where the gateway's decisions go: Prometheus metrics for all, the audit log for every denial
and a sample of the allowed requests (with a count of the rest), sent to the IdP in batches
so the hot path never waits for the database."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter as Tally
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Histogram

from gateway.identity import Caller
from gateway.idp_client import IdpClient, IdpError
from gateway.policy import Decision, Outcome

DECISIONS = Counter("bascule_gateway_decisions_total", "Gateway decisions by result", ["result"])
LATENCY = Histogram(
    "bascule_gateway_decision_seconds",
    "Time from request to decision (policy, session and permission checks)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
COUNTED = {outcome: DECISIONS.labels(outcome.value) for outcome in Outcome}
ALLOW_SAMPLE_EVERY = 100
# At most this many sampled allows per batch (per worker): above 500 req/s a worker's samples
# became a burst of IdP inserts every FLUSH_SECONDS that took a core from the requests (their
# latency tail). The per-user summary still counts every allowed request; denials all go.
MAX_SAMPLED_ALLOWS = 10
FLUSH_SECONDS = 2.0
MAX_QUEUE = 10_000

log = logging.getLogger("bascule.gateway")


class AuditTrail:
    def __init__(self, idp: IdpClient) -> None:
        self.idp = idp
        self.queue: list[dict[str, Any]] = []
        self.allowed: Tally[str] = Tally()
        self._seen_allows = 0
        self._sampled = 0  # allows sampled since the last flush

    def note(
        self, decision: Decision, method: str, path: str, ip: str, caller: Caller | None
    ) -> None:
        COUNTED[decision.outcome].inc()
        if decision.outcome is Outcome.ALLOW:
            self.allowed[caller.uid if caller else "-"] += 1
            self._seen_allows += 1
            if self._seen_allows % ALLOW_SAMPLE_EVERY or self._sampled >= MAX_SAMPLED_ALLOWS:
                return
            self._sampled += 1
        if len(self.queue) >= MAX_QUEUE:
            return  # the IdP is unreachable for long: metrics still count, the log says so
        self.queue.append(
            {
                "event": "gateway.decision",
                "outcome": "success" if decision.outcome is Outcome.ALLOW else "failure",
                "actor_id": caller.uid if caller else None,
                "actor_email": caller.email if caller else None,
                "org_id": self.idp.org_id,
                "target": f"{method} {path}"[:254],
                "ip": ip,
                "time": datetime.now(UTC).isoformat(),
                "details": {
                    "method": method,
                    "path": path,
                    "result": decision.outcome.value,
                    "reason": decision.reason,
                    "rule_line": decision.line,
                    "permissions": sorted(caller.permissions) if caller else None,
                    "amr": list(caller.amr) if caller else None,
                    "auth_time": caller.auth_time if caller else None,
                    "sampled": ALLOW_SAMPLE_EVERY if decision.outcome is Outcome.ALLOW else 1,
                },
            }
        )

    async def flush(self) -> None:
        events, self.queue = self.queue, []
        self._sampled = 0
        if self.allowed:
            events.append(
                {
                    "event": "gateway.summary",
                    "org_id": self.idp.org_id,
                    "time": datetime.now(UTC).isoformat(),
                    "details": {"allowed_by_user": dict(self.allowed)},
                }
            )
            self.allowed = Tally()
        for start in range(0, len(events), 500):
            try:
                await self.idp.record(events[start : start + 500])
            except IdpError as exc:
                log.warning("could not send %d decisions to the audit log: %s", len(events), exc)
                return

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()
