"""``bascule serve``: the IdP and the gateway on loopback, initialising an empty instance first."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

import click

from idp.cli._common import app_context, settings
from idp.cli.setup import describe_owner
from idp.common.sealing import ensure_data_key
from idp.services import bootstrap

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


@click.command()
@click.option("--idp-bind", default="127.0.0.1:8000", show_default=True)
@click.option("--gateway-bind", default="127.0.0.1:8080", show_default=True)
@click.option("--upstream-bind", default="127.0.0.1:8090", show_default=True)
@click.option("--workers", default=2, show_default=True, help="gunicorn workers per server.")
def serve(idp_bind: str, gateway_bind: str, upstream_bind: str, workers: int) -> None:
    """Run the IdP and the gateway; on an empty instance, create a demo org and owner first."""
    current = settings()
    current.instance_dir.mkdir(parents=True, exist_ok=True)
    ensure_data_key(current.keys_dir, current.data_key)
    with app_context(current):
        bootstrap.upgrade_schema()
        if bootstrap.is_empty():
            owner = bootstrap.ensure_owner(current, bootstrap.DEMO_OWNER, bootstrap.DEMO_ORG)
            click.secho("New instance: created the demo organisation and its owner.", bold=True)
            click.echo(describe_owner(owner, current.issuer))
    children = [_gunicorn(idp_bind, "idp.app:create_app()", workers)]
    gateway_env = {}
    if current.gateway_policy is None:  # the demo policy: run the app it describes
        data = current.instance_dir.resolve() / "messaging.db"
        app = f"create_app({current.issuer!r}, {current.gateway_url!r}, data_path={str(data)!r})"
        children.append(_gunicorn(upstream_bind, f"examples.messaging.app:{app}", workers))
        gateway_env["BASCULE_UPSTREAM_URL"] = f"http://{upstream_bind}"
        click.echo(
            f"{'app':8} http://{upstream_bind}  (the demo messaging app, behind the gateway)"
        )
    children.append(
        _gunicorn(gateway_bind, "gateway.app:create_app()", workers, GATEWAY_WORKER, gateway_env)
    )
    click.echo(f"{'IdP':8} http://{idp_bind}")
    click.echo(f"{'gateway':8} http://{gateway_bind}")
    click.echo(f"Sign in at {current.issuer}/login, or open the app through the gateway at")
    click.echo(f"{current.gateway_url}/  (Ctrl-C stops everything)")
    _wait(children)


# How long the servers get to finish requests in flight (gunicorn's graceful timeout is 5 s).
STOP_SECONDS = 10.0
# The gateway's own HTTP server on uvloop (gateway/worker.py), which also spreads connections
# evenly over the workers (with the default loop one worker took nearly all of them).
GATEWAY_WORKER = "gateway.worker.GatewayWorker"


def _gunicorn(
    bind: str,
    target: str,
    workers: int,
    worker_class: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "gunicorn", "--bind", bind, "--workers", str(workers)]
    if worker_class:
        command += ["--worker-class", worker_class]
    # No control socket: gunicorn's default is one fixed path under $HOME, which our two
    # servers (and any other instance on the machine) would fight over.
    command += ["--access-logfile", "-", "--graceful-timeout", "5", "--no-control-socket", target]
    # Its own session: Ctrl-C in the terminal reaches only `bascule serve`, which then stops the
    # servers gracefully (SIGTERM lets in-flight requests finish; gunicorn's SIGINT does not).
    return subprocess.Popen(  # noqa: S603 -- our own argv
        command,
        env={**os.environ, **(extra_env or {})},
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this server if `bascule serve` dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait(children: list[subprocess.Popen[bytes]]) -> None:
    """Run until one server exits or we are told to stop; then stop them all."""

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + STOP_SECONDS  # one deadline for all: they stop together
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    failed = [c.returncode for c in children if c.returncode not in (0, -signal.SIGTERM)]
    if failed:
        raise SystemExit(1)


COMMANDS = [serve]
