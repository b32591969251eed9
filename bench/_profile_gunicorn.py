"""gunicorn config for ``oidc.py --profile``: measure ``POST /oauth2/token`` inside each worker.

Loaded with ``gunicorn --config bench/_profile_gunicorn.py``; the IdP itself is untouched. While
a marker file exists in ``$BASCULE_BENCH_PROFILE_DIR``, every token request is measured: its
wall and CPU time, its SQL statements (each one's wall and CPU time in ``cursor.execute``),
connection-pool checkouts (each one a pre-ping round trip) and Redis commands. ``PLAIN`` does
only that (py-spy may be watching from outside); ``ON`` also runs the request (the app call and
the iteration of its body) under pyinstrument. When the worker exits it writes
``worker-<pid>.json`` (the tallies of both phases, the statements of the first requests in
order, pyinstrument's time split by where it was spent) and ``worker-<pid>.txt``
(pyinstrument's call tree; ``.all.txt`` with every frame).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

PROFILED_PATH = "/oauth2/token"
INTERVAL = 0.001  # seconds between samples (finer costs the requests more)
TRACED = 2  # requests whose statements are kept in order, as examples

# Inclusive time of these functions (a sample counts once per name however deep the recursion).
OPERATIONS = {
    "gunicorn's handling of a request (all of it)": ("handle", "gunicorn/workers/sync.py"),
    "the Flask app (Flask.wsgi_app)": ("wsgi_app", "flask/app.py"),
    "the view (everything inside idp.views.oidc.token)": ("token", "idp/views/oidc.py"),
    "authlib's token endpoint (validation, grant, response)": (
        "create_token_response",
        "authlib/oauth2/rfc6749/authorization_server.py",
    ),
    "Signer.sign (joserfc + RSA)": ("sign", "idp/common/signing.py"),
    "audit.record": ("record", "idp/services/audit.py"),
    "client authentication (authlib + query + HMAC)": ("authenticate_client", "authlib/"),
    "clients.check_secret": ("check_secret", "idp/services/oidc/clients.py"),
    "Keyring.derive": ("derive", "idp/common/sealing.py"),
    "tokens.find_refresh_token": ("find_refresh_token", "idp/services/oidc/tokens.py"),
    "tokens.rotate": ("rotate", "idp/services/oidc/tokens.py"),
    "tokens.subject_of": ("subject_of", "idp/services/oidc/tokens.py"),
    "tokens.access_token": ("access_token", "idp/services/oidc/tokens.py"),
    "tokens.id_token": ("id_token", "idp/services/oidc/tokens.py"),
    "Session.commit (SQLAlchemy)": ("commit", "sqlalchemy/orm/session.py"),
    "pool checkout (pre-ping)": ("_checkout", "sqlalchemy/pool/base.py"),
    "session interface (open/save)": ("open_session", "idp/session_interface.py"),
    "session interface save": ("save_session", "idp/session_interface.py"),
    "after_request hooks": ("process_response", "flask/app.py"),
}
# Exclusive time by the library the sampled (innermost) frame belongs to.
LIBRARIES = (
    ("cryptography", "cryptography (RSA, HMAC)"),
    ("joserfc", "joserfc"),
    ("sqlalchemy", "SQLAlchemy"),
    ("psycopg", "psycopg (its Python, the wait excepted)"),
    ("redis", "redis-py"),
    ("authlib", "authlib"),
    ("flask_sqlalchemy", "Flask-SQLAlchemy"),
    ("flask_wtf", "Flask-WTF"),
    ("flask", "Flask"),
    ("werkzeug", "Werkzeug"),
    ("prometheus_client", "prometheus-client"),
    ("/idp/", "idp (our code)"),
    ("sqlite3", "sqlite3"),
    ("gunicorn", "gunicorn (HTTP parsing, accept, write)"),
)
Frame = tuple[str, str]  # a function's name and its file

PHASES = {"PLAIN": "plain", "ON": "pyinstrument"}  # marker file -> what runs meanwhile
# CPU time (this thread's, so waiting does not count) inside these callables, inclusive, in the
# plain phase: a deterministic split where a sampler would guess. Each is looked up by module
# and attribute and replaced by a timing wrapper; callers find it through the module or class.
TIMED = {
    "client authentication (authlib, client query, HMAC)": (
        "idp.services.oidc.server",
        "Server.authenticate_client",
    ),
    "tokens.find_refresh_token (token+grant, user)": (
        "idp.services.oidc.tokens",
        "find_refresh_token",
    ),
    "tokens.rotate (UPDATE used_at)": ("idp.services.oidc.tokens", "rotate"),
    "tokens.subject_of (user again, autoflush INSERT)": ("idp.services.oidc.tokens", "subject_of"),
    "tokens.access_token": ("idp.services.oidc.tokens", "access_token"),
    "tokens.id_token": ("idp.services.oidc.tokens", "id_token"),
    "Signer.sign (joserfc + RSA, 2 per grant)": ("idp.common.signing", "Signer.sign"),
    "audit.record (with the commit)": ("idp.services.audit", "record"),
    "audit.chain_hash": ("idp.services.audit", "chain_hash"),
    "Session.commit": ("sqlalchemy.orm.session", "Session.commit"),
    "Session.flush (pending rows, autoflush included)": ("sqlalchemy.orm.session", "Session.flush"),
    "Pool.connect (checkout with pre-ping)": ("sqlalchemy.pool.base", "Pool.connect"),
    "authlib create_token_response (all of the endpoint)": (
        "idp.services.oidc.server",
        "Server.create_token_response",
    ),
}


def _tally() -> dict[str, Any]:
    return {
        "requests": 0,
        "request_seconds": 0.0,  # wall, the app call and its body
        "request_cpu_seconds": 0.0,  # this thread's CPU meanwhile
        "statements": Counter(),
        "sql_seconds": 0.0,  # wall, cursor.execute of each statement
        "sql_cpu_seconds": 0.0,  # CPU in cursor.execute (the driver, its socket calls)
        "traces": [],  # the first TRACED requests' statements, in order
        "timers": Counter(),  # CPU seconds inside each of TIMED (plain phase only)
        "timers_wall": Counter(),  # and wall seconds
    }


_phase: dict[str, Any] = {"current": None}
_tallies = {name: _tally() for name in PHASES.values()}
_sessions: list[Any] = []  # pyinstrument's, one per request; combined once, at exit


def _directory() -> Path:
    return Path(os.environ["BASCULE_BENCH_PROFILE_DIR"])


def _statement_kind(sql: str) -> str:
    text = " ".join(sql.split())
    for pattern in (
        r"^(SELECT) .*? FROM (\w+)",
        r"^(INSERT INTO) (\w+)",
        r"^(UPDATE) (\w+)",
        r"^(DELETE FROM) (\w+)",
    ):
        match = re.match(pattern, text, re.IGNORECASE)
        if match:
            return f"{match.group(1).upper()} {match.group(2)}"
    return text.split(" ", 1)[0].upper()


def _count(kind: str, line: str) -> dict[str, Any] | None:
    """Count a statement for the request in progress, if one is measured."""
    name = _phase["current"]
    if name is None:
        return None
    tally: dict[str, Any] = _tallies[name]
    tally["statements"][kind] += 1
    if tally["requests"] < TRACED:
        while len(tally["traces"]) <= tally["requests"]:
            tally["traces"].append([])
        tally["traces"][tally["requests"]].append(line)
    return tally


def _instrument_sql() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["bench_started"] = (time.perf_counter(), time.thread_time())

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        wall, cpu = conn.info.pop("bench_started", (0.0, 0.0))
        tally = _count(_statement_kind(statement), " ".join(statement.split())[:160])
        if tally is not None:
            tally["sql_seconds"] += time.perf_counter() - wall
            tally["sql_cpu_seconds"] += time.thread_time() - cpu

    def checkout(*_: Any) -> None:
        _count("(pool checkout: pre-ping)", "(pool checkout: pre-ping)")

    event.listen(Engine, "before_cursor_execute", before)
    event.listen(Engine, "after_cursor_execute", after)
    event.listen(Pool, "checkout", checkout)

    import redis.client

    plain = redis.client.Redis.execute_command
    piped = redis.client.Pipeline.execute

    def execute_command(self: Any, *args: Any, **options: Any) -> Any:
        if not isinstance(self, redis.client.Pipeline):
            _count(f"redis {str(args[0]).upper()}", f"redis {args[0]}")
        return plain(self, *args, **options)

    def execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        names = "+".join(str(c[0][0]).upper() for c in self.command_stack)
        _count(f"redis pipeline {names}", f"redis pipeline {names}")
        return piped(self, *args, **kwargs)

    redis.client.Redis.execute_command = execute_command  # type: ignore[method-assign]
    redis.client.Pipeline.execute = execute  # type: ignore[method-assign]


class _Profiled:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.markers = [(_directory() / marker, name) for marker, name in PHASES.items()]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        phase = None
        if environ.get("PATH_INFO") == PROFILED_PATH:
            phase = next((name for marker, name in self.markers if marker.exists()), None)
        if phase is None:
            return self.app(environ, start_response)
        profiler = None
        if phase == "pyinstrument":
            from pyinstrument import Profiler

            profiler = Profiler(interval=INTERVAL)
        tally = _tallies[phase]
        _phase["current"] = phase
        wall, cpu = time.perf_counter(), time.thread_time()
        if profiler is not None:
            profiler.start()
        try:
            result = self.app(environ, start_response)
            try:
                body = list(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        finally:
            if profiler is not None:
                _sessions.append(profiler.stop())
            tally["request_cpu_seconds"] += time.thread_time() - cpu
            tally["request_seconds"] += time.perf_counter() - wall
            tally["requests"] += 1
            _phase["current"] = None
        return body


def _instrument_timers() -> None:
    import functools
    import importlib

    timers, walls = _tallies["plain"]["timers"], _tallies["plain"]["timers_wall"]
    for name, (module_name, path) in TIMED.items():
        owner: Any = importlib.import_module(module_name)
        *outer, attribute = path.split(".")
        for part in outer:
            owner = getattr(owner, part)
        original = getattr(owner, attribute)

        def timed(*args: Any, _f: Any = original, _n: str = name, **kwargs: Any) -> Any:
            if _phase["current"] != "plain":
                return _f(*args, **kwargs)
            started, wall = time.thread_time(), time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                timers[_n] += time.thread_time() - started
                walls[_n] += time.perf_counter() - wall

        setattr(owner, attribute, functools.wraps(original)(timed))


def post_worker_init(worker: Any) -> None:
    _instrument_sql()
    _instrument_timers()
    worker.wsgi = _Profiled(worker.wsgi)


def _named(function: str, wanted: str) -> bool:
    """``function`` is ``wanted``, bare or qualified by its class (py-spy may say either)."""
    return function == wanted or function.endswith("." + wanted)


def _library(frames: list[Frame]) -> str:
    """Where the innermost frame is: blocked on a server, or running in which library. A
    built-in (C) function counts for the library that called it."""
    located = [f for f in frames if f[1] and not f[1].startswith("<")]
    if not located:
        return "?"
    function, path = located[-1]
    if _named(function, "wait") and path.endswith("psycopg/connection.py"):
        return "waiting for PostgreSQL (psycopg Connection.wait)"
    if "redis/" in path and "read" in function:
        return "waiting for Redis (redis-py read)"
    for marker, name in LIBRARIES:
        if marker in path:
            return name
    return "Python standard library and other"


def split(
    samples: Iterable[tuple[list[Frame], float]],
) -> tuple[dict[str, float], dict[str, float], float]:
    """Samples (a stack, outermost first, and its weight) into the inclusive weight of each
    of OPERATIONS, the exclusive weight per library, and the total weight. Shared with
    oidc.py, which reads py-spy's samples with it."""
    operations: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    total = 0.0
    for frames, weight in samples:
        total += weight
        seen = set()
        for function, path in frames:
            for name, (wanted, where) in OPERATIONS.items():
                if name not in seen and _named(function, wanted) and where in path:
                    operations[name] += weight
                    seen.add(name)
        libraries[_library(frames)] += weight
    return dict(operations), dict(libraries), total


def _pyinstrument_samples(session: Any) -> Iterator[tuple[list[Frame], float]]:
    for stack, seconds in session.frame_records:
        parts = [identifier.split("\x00") for identifier in stack]
        yield [(p[0], p[1] if len(p) > 1 else "") for p in parts], seconds


def _combined() -> Any:
    """One session of every request's samples (pyinstrument's own combining copies the
    records at each step, which would cost more than the requests as they add up)."""
    from pyinstrument.session import Session

    first = _sessions[0]
    records = [record for session in _sessions for record in session.frame_records]
    return Session(
        frame_records=records,
        start_time=first.start_time,
        duration=sum(s.duration for s in _sessions),
        min_interval=first.min_interval,
        max_interval=first.max_interval,
        sample_count=len(records),
        target_description=f"POST {PROFILED_PATH}, {len(_sessions)} requests",
        start_call_stack=first.start_call_stack,
        cpu_time=sum(s.cpu_time or 0.0 for s in _sessions),
        sys_path=first.sys_path,
        sys_prefixes=first.sys_prefixes,
    )


def worker_exit(server: Any, worker: Any) -> None:
    out = _directory()
    pid = os.getpid()
    data: dict[str, Any] = {name: dict(tally) for name, tally in _tallies.items()}
    if _sessions:
        from pyinstrument.renderers import ConsoleRenderer

        session = _combined()
        renderer = ConsoleRenderer(unicode=True, color=False, show_all=False, short_mode=False)
        (out / f"worker-{pid}.txt").write_text(renderer.render(session))
        every = ConsoleRenderer(unicode=True, color=False, show_all=True, short_mode=False)
        (out / f"worker-{pid}.all.txt").write_text(every.render(session))
        operations, libraries, total = split(_pyinstrument_samples(session))
        data["pyinstrument"] |= {
            "sampled_seconds": total,
            "operations": operations,
            "libraries": libraries,
        }
    (out / f"worker-{pid}.json").write_text(json.dumps(data, indent=2))
