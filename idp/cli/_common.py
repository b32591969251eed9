"""What every command shares: building the app, printing for people or for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any

import click
from flask import Flask

from idp.common.sealing import MissingKeyError
from idp.config import ConfigError, Settings, load
from idp.extensions import db
from idp.runtime import runtime
from idp.services import credentials
from idp.services.audit import CLI
from idp.services.errors import ServiceError

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def settings() -> Settings:
    try:
        return load()
    except ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from None


@contextmanager
def app_context(current: Settings | None = None) -> Iterator[Flask]:
    """An app context for one command, with a clear message when keys or config are missing."""
    from idp.app import create_app

    try:
        app = create_app(current or settings(), dev_warning=False)
    except MissingKeyError as exc:
        raise click.ClickException(str(exc)) from None
    with app.app_context():
        try:
            yield app
        finally:
            # A command gives its connections back when done, so that callers running it
            # in-process (scripts, tests) do not keep database connections open.
            db.session.remove()
            db.engine.dispose()
            app.extensions["bascule"].store.close()


def service_context() -> credentials.Context:
    """What the services need, acting from the command line (inside ``app_context``)."""
    rt = runtime()
    return credentials.Context(rt.settings, rt.store, rt.mailer, CLI, rt.clock())


def emit(data: Any, as_json: bool, text: str) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(text)


def friendly_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a service's refusal into a one-line error and exit status 1, never a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ServiceError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)

    return wrapper
