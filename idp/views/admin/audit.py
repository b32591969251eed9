"""The audit log: filters, pages, and the same selection as a JSON-lines download."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import Response, abort, request, stream_with_context, url_for

from idp.models import User
from idp.runtime import runtime
from idp.services import audit_query
from idp.services.authz import Principal
from idp.views._helpers import login_required, origin
from idp.views.admin._common import bp, page_number, principal, render

PER_PAGE = 50


@bp.get("/audit")
@login_required
def audit_page(user: User) -> tuple[str, int]:
    acting = principal(user)
    try:
        filters = _filters()
    except ValueError as exc:  # _page reads the event names, which checks audit.read first
        return _page(acting, audit_query.Page([], 0, 1, PER_PAGE), error=str(exc)), 400
    result = audit_query.search(acting, page=page_number(), per_page=PER_PAGE, **filters)
    return _page(acting, result), 200


@bp.get("/audit.jsonl")
@login_required
def audit_download(user: User) -> Response:
    acting = principal(user)
    try:
        filters = _filters()
    except ValueError as exc:
        abort(400, description=str(exc))
    rows = audit_query.export(acting, origin=origin(), now=runtime().clock(), **filters)

    def lines() -> Iterator[str]:
        for row in rows:
            yield json.dumps(row, ensure_ascii=False) + "\n"

    day = datetime.fromtimestamp(runtime().clock(), UTC).strftime("%Y-%m-%d")
    return Response(
        stream_with_context(lines()),
        mimetype="application/jsonl",
        headers={
            "Content-Disposition": f'attachment; filename="audit-{acting.org.slug}-{day}.jsonl"',
            "Cache-Control": "no-store",
        },
    )


@bp.app_template_filter("audit_details")
def describe(details: dict[str, Any] | None) -> list[str]:
    """An event's details as short lines; of a before/after pair, only what changed."""
    rest = dict(details or {})
    before, after = rest.pop("before", None), rest.pop("after", None)
    lines = []
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(before.keys() | after.keys()):
            if before.get(key) != after.get(key):
                lines.append(f"{key}: {_text(before.get(key))} → {_text(after.get(key))}")
    elif isinstance(before, list) and isinstance(after, list):
        added, removed = sorted(set(after) - set(before)), sorted(set(before) - set(after))
        lines += [f"added: {', '.join(map(str, added))}"] if added else []
        lines += [f"removed: {', '.join(map(str, removed))}"] if removed else []
    elif before is not None or after is not None:
        lines.append(f"{_text(before)} → {_text(after)}")
    return lines + [f"{key}: {_text(value)}" for key, value in rest.items()]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value) if value else "none"
    return json.dumps(value, ensure_ascii=False)


def _filters() -> dict[str, Any]:
    """The filters from the query string; dates are whole days in UTC, both ends included."""
    args = request.args
    since, until = _day(args.get("since", ""), "From"), _day(args.get("until", ""), "To")
    if until is not None:
        try:
            until += timedelta(days=1)  # "to 25 November" includes the 25th
        except OverflowError:
            until = None  # "to 31 December 9999": no end at all
    if since and until and since >= until:
        raise ValueError("The “From” date must not be after the “To” date.")
    return {
        "actor": args.get("actor", "").strip()[:254] or None,
        "event": args.get("event", "").strip()[:63] or None,
        "text": args.get("q", "").strip()[:200] or None,
        "since": since,
        "until": until,
    }


def _day(raw: str, label: str) -> datetime | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw) if len(raw) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise ValueError(f"The “{label}” date must look like 2026-01-31.")
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _page(acting: Principal, result: audit_query.Page, error: str | None = None) -> str:
    args = {k: v for k, v in request.args.items() if k in {"actor", "event", "q", "since", "until"}}
    args = {k: v[:254] for k, v in args.items() if v.strip()}

    def page_url(number: int) -> str:
        return url_for("admin.audit_page", **args, page=number)

    return render(
        "audit.html",
        acting,
        result=result,
        event_groups=_grouped(audit_query.event_types(acting)),
        args=args,
        page_url=page_url,
        download_url=url_for("admin.audit_download", **args),
        error=error,
    )


def _grouped(names: list[str]) -> list[tuple[str, list[str]]]:
    """Event names by family ("login" for "login.failure"), for the filter's choices."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.partition(".")[0], []).append(name)
    return sorted(groups.items())
