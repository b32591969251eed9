"""``bascule audit export|verify``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from idp.cli._common import app_context, emit, json_option
from idp.services import audit as audit_service


@click.group("audit")
def audit_group() -> None:
    """The audit log."""


def parse_since(_ctx: click.Context, _param: click.Parameter, value: str | None):  # type: ignore[no-untyped-def]
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            "use an ISO 8601 time, e.g. 2026-11-25 or 2026-11-25T09:00Z"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@audit_group.command("export")
@click.option("--since", callback=parse_since, help="Only events at or after this ISO time.")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
def export(since: datetime | None, fmt: str) -> None:
    """Print events as JSON lines, oldest first, with their chain hashes."""
    with app_context():
        for entry in audit_service.events(since):
            row = audit_service.as_dict(entry) | {"prev_hash": entry.prev_hash, "hash": entry.hash}
            click.echo(json.dumps(row, ensure_ascii=False))


@audit_group.command("verify")
@json_option
def verify(as_json: bool) -> None:
    """Check the hash chain; exit 1 and name the first bad row if it was tampered with."""
    with app_context():
        result = audit_service.verify()
    data = {
        "ok": result.ok,
        "checked": result.checked,
        "first_bad_seq": result.first_bad_seq,
        "problem": result.problem,
    }
    if result.ok:
        emit(data, as_json, f"Audit chain intact: {result.checked} event(s) verified.")
    else:
        emit(
            data,
            as_json,
            f"Audit chain BROKEN at event {result.first_bad_seq}: {result.problem} "
            f"({result.checked} event(s) before it verified).",
        )
        raise SystemExit(1)


COMMANDS = [audit_group]
