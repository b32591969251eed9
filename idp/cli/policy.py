"""``bascule policy check|replay``: try a gateway policy before it goes live."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import click

from gateway import policy as policy_module
from gateway.config import DEMO_POLICY
from idp.cli._common import app_context, emit, friendly_errors, json_option, settings
from idp.cli.audit import parse_since
from idp.services import policy_tools
from idp.services.errors import ServiceError

policy_file = click.option(
    "--policy",
    "policy_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The policy to try (default: BASCULE_GATEWAY_POLICY, else the bundled demo).",
)


def _load(path: Path | None) -> policy_module.Policy:
    try:
        return policy_module.load(path or settings().gateway_policy or DEMO_POLICY)
    except policy_module.PolicyError as exc:
        raise ServiceError(str(exc)) from None


@click.group("policy")
def policy_group() -> None:
    """The gateway's access policy."""


@policy_group.command("check")
@click.option("--method", default="GET", show_default=True)
@click.option("--url", required=True, help="A path (/billing) or a full URL.")
@click.option("--user", "email", default=None, help="Signed in as; omit for no session.")
@click.option(
    "--amr", default="pwd", show_default=True, help="How they signed in, e.g. pwd,otp,mfa."
)
@click.option("--auth-age", default=0.0, show_default=True, help="Seconds since they signed in.")
@click.option("--ip", default=None, help="Client address, for allow_cidrs rules.")
@policy_file
@json_option
@friendly_errors
def check(
    method: str,
    url: str,
    email: str | None,
    amr: str,
    auth_age: float,
    ip: str | None,
    policy_path: Path | None,
    as_json: bool,
) -> None:
    """Which rule a request meets, and what the gateway decides."""
    policy = _load(policy_path)
    with app_context():
        found = policy_tools.check(
            policy, method, url, email, amr=tuple(a for a in amr.split(",") if a),
            auth_age=auth_age, ip=ip, now=time.time(),
        )  # fmt: skip
    route = found.decision.route
    data = {
        "method": found.method,
        "path": found.path,
        "decision": found.decision.outcome.value,
        "reason": found.decision.reason,
        "rule": None if route is None else {"line": route.line, "path": route.path},
        "permissions": None if found.permissions is None else sorted(found.permissions),
    }
    rule = f"line {route.line} ({route.path})" if route else "no rule (deny by default)"
    emit(
        data,
        as_json,
        f"{found.method} {found.path}: {found.decision.outcome.value.upper()} by {rule}: "
        f"{found.decision.reason}",
    )


@policy_group.command("replay")
@click.option("--since", callback=parse_since, help="From this ISO time (default: everything).")
@policy_file
@json_option
@friendly_errors
def replay(since: datetime | None, policy_path: Path | None, as_json: bool) -> None:
    """Past gateway decisions (denials, sampled allows) that a policy would decide otherwise."""
    policy = _load(policy_path)
    with app_context():
        replayed, changes = policy_tools.replay(policy, since)
    lines = [
        f"{c.time:%Y-%m-%d %H:%M:%S} {c.who or '(no session)'} {c.method} {c.path}: "
        f"{c.before} -> {c.after} (line {c.rule_line}: {c.reason})"
        for c in changes
    ]
    lines.append(f"{len(changes)} of {replayed} recorded decisions would change.")
    emit(
        {"replayed": replayed, "changes": [asdict(c) for c in changes]},
        as_json,
        "\n".join(lines),
    )


COMMANDS = [policy_group]
