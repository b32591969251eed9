"""Prometheus metrics of the IdP and the gateway.

Under gunicorn each worker counts on its own; set PROMETHEUS_MULTIPROC_DIR to an empty folder
so /metrics (and the gateway's /_bascule/metrics) adds up all workers (prometheus-client's
multiprocess mode).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    generate_latest,
    multiprocess,
)

SIGN_INS = Counter("bascule_sign_ins_total", "Password sign-in attempts", ["result"])
SAML_RESULTS = Counter(
    "bascule_saml_results_total",
    "SAML messages received: success, or the reason they were refused",
    ["result"],
)


def exposition() -> tuple[bytes, str]:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
