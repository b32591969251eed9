"""Liveness, readiness and metrics for load balancers and Prometheus."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from idp.common import metrics
from idp.extensions import db
from idp.runtime import runtime

bp = Blueprint("health", __name__)
log = logging.getLogger("bascule.idp")


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    checks = {"database": _check_database(), "store": _check_store()}
    ready = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503


@bp.get("/metrics")
def prometheus() -> Response:
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)


def _check_database() -> str:
    try:
        db.session.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:  # any driver error means "not ready"
        log.warning("readiness: database unreachable: %s", exc)
        db.session.rollback()
        return "unreachable"


def _check_store() -> str:
    try:
        runtime().store.ping()
        return "ok"
    except Exception as exc:  # StoreUnavailable or a driver error
        log.warning("readiness: store unreachable: %s", exc)
        return "unreachable"
