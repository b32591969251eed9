"""Refresh-token grants per second through gunicorn, against bare RS256 JWT signing.

A refresh grant's unavoidable work is signing what it returns; the rest (HTTP, authlib, client
authentication, the refresh-token rotation in the database, the audit chain) should be a
bounded overhead. This script measures, in one run, on a throwaway instance:

(a) the reference: ``Signer.sign`` with the instance's own current RS256 key, in one process
    per gunicorn worker, in tokens per second;
(b) ``POST /oauth2/token`` with ``grant_type=refresh_token`` (``client_secret_basic``) through
    gunicorn, one sync worker per core, on PostgreSQL + Redis: one grant per client loop, each
    obtained through a real code flow, each loop presenting the refresh token the previous
    answer returned (rotation); only 200s count; p50/p99 latencies;
(c) the ratio (b)/(a), the target being >= 0.05 (the issue reckons 400 grants/s on 2 cores);
(d) full code-flow sign-ins per second: authorize, login form (bcrypt at the configured cost),
    back to authorize, code, token exchange. Informational.

    python bench/oidc.py                          # PostgreSQL + Redis (127.0.0.1:5432, :6379)
    python bench/oidc.py --sqlite                 # SQLite + the SQL store, for comparison
    python bench/oidc.py --seconds 10 --clients 8 --json

Every refresh answer carries two JWTs (the access token and, the scope holding ``openid``, an
ID token), so 0.5 is the ratio of a stack that costs nothing. As in ``login.py``, reference and
HTTP load alternate in ``--repeats`` slices, and the CPU of everything is accounted per slice:
the gunicorn workers, the database and Redis servers, this process (the load generator, whose
share must stay small or it starves the server) and everyone else.

``--profile DIR`` measures no ratio: it runs the refresh load with the workers timing their own
steps and counting their SQL statements (a gunicorn config, ``_profile_gunicorn.py``; py-spy
and ``pg_stat_activity`` watching if available), then under pyinstrument in each worker
(``pip install pyinstrument``), and prints where a grant's time goes.

Run by hand, not by pytest: it takes every core for about a minute.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import html
import http.client
import json
import math
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from _harness import (
    CSRF,
    HTTP_TIMEOUT,
    INTERRUPTED,
    NOISY,
    ROOT,
    Tally,
    backends_of,
    base_environment,
    children_of,
    cpu_of,
    free_port,
    gunicorn,
    in_processes,
    initialise,
    machine_busy,
    postgres_database,
    processes_named,
    progress,
    redis_database,
    request,
    show,
    timed_loops,
    until_done,
    user_and_kernel_cpu_of,
)

TARGET_RATIO = 0.05
EMAIL = "bench@bench.test"
SCOPE = "openid profile email offline_access"  # what openid-client asks for in tests/interop
REDIRECT_URI = "http://127.0.0.1:9/callback"  # registered, never fetched
LOADGEN_LIMIT = 0.10  # the load generator's share of all CPUs above which it starves the server
TOKEN_PATH = "/oauth2/token"
PY_SPY_RATE = 500  # samples per second and worker under --profile
_NEXT = re.compile(r'name="next" value="([^"]*)"')


# ---------------------------------------------------------------------------------------------
# (a) Reference: Signer.sign with the instance's RS256 key, one process per worker


def _claims(kid: str) -> dict[str, Any]:
    """An access token's claims as tokens.access_token makes them (sizes matter little)."""
    now = int(time.time())
    return {
        "iss": "http://127.0.0.1:8000",
        "aud": "http://127.0.0.1:8000",
        "sub": "0b8e3a53-6d0f-4a39-9c1e-2f5d3c1b7a10",
        "client_id": "Qm9vdHN0cmFwQ2xpZW50SWQ",
        "scope": SCOPE,
        "iat": now,
        "exp": now + 300,
        "jti": f"5d2f0c7e-4d8b-4a55-8f6e-0c9b1d7a3e21.{secrets.token_urlsafe(12)}",
        "auth_time": now,
        "amr": ["pwd"],
        "acr": "1",
        "sid": secrets.token_urlsafe(16),
        "org_id": "9a6c1f4e-2b7d-4e3a-8c5f-1d0e9b8a7c6d",
    }


def _sign_loop(
    kid: str, private_jwk: dict[str, Any], seconds: float, barrier: Any, results: Any
) -> None:
    """One process signing JWTs until its time is up; reports count, wall, CPU."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us on Ctrl-C
    from joserfc import jwk

    from idp.common.signing import Signer

    signer = Signer(kid, "RS256", jwk.RSAKey.import_key(private_jwk))
    claims = _claims(kid)
    signer.sign(claims, typ="at+jwt")  # first use builds OpenSSL's key structures
    barrier.wait()
    start, cpu = time.monotonic(), time.process_time()
    deadline = start + seconds
    count, last = 0, start
    while last < deadline:
        claims["jti"] = f"{claims['jti'][:37]}{count}"
        signer.sign(claims, typ="at+jwt")
        count += 1
        last = time.monotonic()
    results.put((count, last - start, time.process_time() - cpu))


@dataclass(frozen=True)
class Reference:
    rate: float
    cpu: float  # CPU seconds the signing processes used
    done: int
    other: float  # share of all CPUs other processes took meanwhile


def sign_slice(kid: str, private_jwk: dict[str, Any], processes: int, seconds: float) -> Reference:
    runs, other = in_processes(_sign_loop, (kid, private_jwk), processes, seconds)
    return Reference(
        rate=sum(r[0] / r[1] for r in runs),
        cpu=sum(r[2] for r in runs),
        done=sum(r[0] for r in runs),
        other=other,
    )


# ---------------------------------------------------------------------------------------------
# The instance's client registration and signing key (through the services, in-process)


@dataclass(frozen=True)
class Registered:
    client_id: str
    secret: str
    kid: str  # the current RS256 signing key
    private_jwk: dict[str, Any]

    @property
    def basic(self) -> str:
        """RFC 6749 2.3.1: each part form-encoded, then Basic."""
        pair = f"{quote(self.client_id, safe='')}:{quote(self.secret, safe='')}"
        return "Basic " + base64.b64encode(pair.encode()).decode()


def register(env: dict[str, str]) -> Registered:
    """A first-party confidential client (no consent page), and the RS256 signer the workers
    will use, loaded by ``keys.signer`` in an app context on the instance's own settings."""
    sys.path.insert(0, str(ROOT))
    from idp.cli._common import app_context
    from idp.config import load
    from idp.extensions import db
    from idp.services.oidc import clients, keys

    with app_context(load(env)):
        created = clients.create_client("bench", [REDIRECT_URI], first_party=True)
        db.session.commit()
        signer = keys.signer("RS256")
        if signer.alg != "RS256" or not created.secret:
            raise SystemExit("the instance has no RS256 signer or the client no secret")
        return Registered(
            created.client.id, created.secret, signer.kid, signer.key.as_dict(private=True)
        )


# ---------------------------------------------------------------------------------------------
# The code flow, as a browser and a confidential client do it together


class FlowError(Exception):
    pass


def _path(location: str | None, step: str) -> str:
    if not location:
        raise FlowError(f"{step}: no Location")
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def code_flow(port: int, client: Registered, password: str, scope: str) -> dict[str, Any]:
    """authorize -> /login (GET, POST with bcrypt) -> authorize -> code -> token; the token
    response. Raises FlowError naming the step that went wrong."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    state = secrets.token_urlsafe(16)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": scope,
            "state": state,
            "nonce": secrets.token_urlsafe(16),
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
    )
    answer = request(port, "GET", f"/oauth2/authorize?{query}")
    if answer.status != 302:
        raise FlowError(f"authorize without a session gave {answer.status}")
    answer = request(port, "GET", _path(answer.location, "authorize"))
    page = answer.body.decode("utf-8", "replace")
    csrf, following = CSRF.search(page), _NEXT.search(page)
    if answer.status != 200 or answer.cookie is None or csrf is None or following is None:
        raise FlowError(f"GET /login gave {answer.status} without a session, token or next")
    form = {
        "csrf_token": csrf.group(1),
        "next": html.unescape(following.group(1)),
        "email": EMAIL,
        "password": password,
    }
    answer = request(port, "POST", "/login", urlencode(form), answer.cookie)
    if answer.status != 303 or answer.cookie is None:
        raise FlowError(f"POST /login gave {answer.status}")
    answer = request(port, "GET", _path(answer.location, "sign-in"), cookie=answer.cookie)
    if answer.status != 302 or not (answer.location or "").startswith(REDIRECT_URI + "?"):
        raise FlowError(f"authorize with a session gave {answer.status} to {answer.location}")
    params = parse_qs(urlsplit(answer.location or "").query)
    if params.get("state") != [state] or "code" not in params:
        raise FlowError(f"the authorization response is wrong: {answer.location}")
    body = urlencode(
        {
            "grant_type": "authorization_code",
            "code": params["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        }
    )
    answer = request(port, "POST", TOKEN_PATH, body, headers={"Authorization": client.basic})
    if answer.status != 200:
        raise FlowError(f"the code exchange gave {answer.status}: {answer.body[:200]!r}")
    tokens: dict[str, Any] = json.loads(answer.body)
    if not tokens.get("refresh_token"):
        raise FlowError("the token response has no refresh_token")
    return tokens


def flow_slice(
    port: int, client: Registered, password: str, scope: str, clients: int, seconds: float
) -> Tally:
    def step() -> bool:
        try:
            code_flow(port, client, password, scope)
        except FlowError as exc:
            print(f"code flow failed: {exc}", file=sys.stderr)
            return False
        return True

    return timed_loops(clients, seconds, step)


# ---------------------------------------------------------------------------------------------
# (b) The refresh load: one thread per grant, each rotating its own refresh token


class _Connection(http.client.HTTPConnection):
    """Keep-alive as far as the server allows; counts the connections it had to open."""

    opened = 0

    def connect(self) -> None:
        super().connect()
        self.opened += 1


@dataclass
class Grant:
    refresh_token: str
    alive: bool = True


@dataclass
class Loop:
    done: int = 0
    elapsed: float = 0.0
    requests: int = 0
    connections: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)


def _refresh_loop(port: int, basic: str, grant: Grant, seconds: float, barrier: Any) -> Loop:
    conn = _Connection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    headers = {
        "Authorization": basic,
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
    }
    out = Loop()
    barrier.wait()
    start = time.monotonic()
    deadline, last, failures = start + seconds, start, 0
    try:
        while last < deadline and grant.alive and failures < 5:
            body = f"grant_type=refresh_token&refresh_token={quote(grant.refresh_token)}"
            began = time.perf_counter()
            out.requests += 1
            try:
                conn.request("POST", TOKEN_PATH, body, headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                out.errors[type(exc).__name__] += 1
                failures += 1  # the same token again: if it was spent, reuse detection says so
                last = time.monotonic()
                continue
            took = time.perf_counter() - began
            if response.status == 200:
                grant.refresh_token = json.loads(data)["refresh_token"]
                out.done += 1
                out.latencies.append(took)
                failures = 0
            else:
                try:
                    error = json.loads(data).get("error", "?")
                except ValueError:
                    error = "not JSON"
                out.errors[f"{response.status} {error}"] += 1
                failures += 1
                grant.alive = response.status >= 500  # a 4xx: the grant is spent or revoked
            last = time.monotonic()
    finally:
        conn.close()
    out.elapsed = last - start
    out.connections = conn.opened
    return out


@dataclass(frozen=True)
class Usage:
    """CPU seconds each party used during one slice, and the slice's wall time."""

    wall: float
    workers: float
    workers_kernel: float  # of which in the kernel (system calls: sockets, mostly)
    database: float  # PostgreSQL backends of the run's database (0 on SQLite: in the workers)
    redis: float  # the redis-server process (0 on SQLite: the store is the database)
    loadgen: float  # this process
    other: float  # everything else on the machine

    def share(self, cpu: float) -> float:
        return cpu / (self.wall * (os.cpu_count() or 1))


@dataclass(frozen=True)
class Slice:
    rate: float
    done: int
    requests: int
    connections: int
    errors: dict[str, int]
    latencies: list[float]
    usage: Usage


def _measured(
    master: int, database: str, redis: bool, load: Callable[[], list[Loop]]
) -> tuple[list[Loop], Usage]:
    workers = children_of(master)
    pg = backends_of(database) if database else []
    rd = processes_named("redis-server") if redis else []

    def snapshot() -> tuple[float, ...]:
        return (
            machine_busy(),
            cpu_of(workers),
            user_and_kernel_cpu_of(workers)[1],
            cpu_of([master]),
            cpu_of(pg) if pg else 0.0,
            cpu_of(rd) if rd else 0.0,
            time.process_time(),
        )

    before, started = snapshot(), time.monotonic()
    loops = load()
    after, wall = snapshot(), time.monotonic() - started
    busy, w, k, m, d, r, g = (a - b for a, b in zip(after, before, strict=True))
    return loops, Usage(wall, w, k, d, r, g, max(0.0, busy - w - m - d - r - g))


def refresh_slice(
    port: int,
    client: Registered,
    grants: list[Grant],
    seconds: float,
    master: int,
    database: str,
    redis: bool,
) -> Slice:
    barrier = threading.Barrier(len(grants) + 1)
    loops: list[Loop] = []
    lock = threading.Lock()

    def run_one(grant: Grant) -> None:
        try:
            result = _refresh_loop(port, client.basic, grant, seconds, barrier)
        except threading.BrokenBarrierError:
            return
        with lock:
            loops.append(result)

    def load() -> list[Loop]:
        threads = [threading.Thread(target=run_one, args=(g,), daemon=True) for g in grants]
        for thread in threads:
            thread.start()
        barrier.wait(timeout=10)
        give_up = time.monotonic() + seconds + 2 * HTTP_TIMEOUT
        for thread in threads:
            while thread.is_alive() and time.monotonic() < give_up:
                thread.join(timeout=0.5)
        if len(loops) != len(grants):
            raise SystemExit("a refresh loop did not finish in time")
        return loops

    done_loops, usage = _measured(master, database, redis, load)
    errors: Counter[str] = Counter()
    for loop in done_loops:
        errors.update(loop.errors)
    return Slice(
        rate=sum(lp.done / lp.elapsed for lp in done_loops if lp.elapsed > 0),
        done=sum(lp.done for lp in done_loops),
        requests=sum(lp.requests for lp in done_loops),
        connections=sum(lp.connections for lp in done_loops),
        errors=dict(errors),
        latencies=[x for lp in done_loops for x in lp.latencies],
        usage=usage,
    )


def _jwt_header(token: str) -> dict[str, Any]:
    head = token.split(".", 1)[0]
    return dict(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))))


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    backend: str
    workers: int
    clients: int
    seconds: float
    repeats: int
    scope: str
    signing_key: str
    jwts_per_grant: int
    signatures_per_second: float
    refresh_grants_per_second: float
    ratio: float
    ratio_per_repeat: list[float]
    quiet_repeats: int
    ratio_quiet: float | None
    target: float
    meets_target: bool
    latency_ms_p50: float | None
    latency_ms_p99: float | None
    refresh_grants: int
    refresh_errors: dict[str, int]
    connections_per_request: float
    cpu_ms_per_signature: float
    cpu_ms_per_grant: dict[str, float]
    loadgen_share: float
    other_share_per_repeat: list[tuple[float, float]]
    bcrypt_rounds: int
    code_flow_sign_ins_per_second: float | None
    code_flows: int
    failed_code_flows: int


def _quantile(values: list[float], q: int) -> float | None:
    if len(values) < 2:
        return None
    return round(1000 * statistics.quantiles(values, n=100, method="inclusive")[q - 1], 2)


@contextlib.contextmanager
def instance(
    args: argparse.Namespace, progress: Callable[[str], None], gunicorn_extra: list[str]
) -> Iterator[tuple[int, int, str, str, Registered, Path]]:
    """A throwaway instance under gunicorn: (port, master pid, database name, owner's password,
    the bench client, the temporary directory). Everything is removed on the way out."""
    backend = "sqlite" if args.sqlite else "postgres+redis"
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bascule-bench-oidc-")))
        port = free_port()
        env = base_environment(tmp, port, args.rounds)
        env["BASCULE_LOG_LEVEL"] = "WARNING"
        database = ""
        if not args.sqlite:
            env["BASCULE_DATABASE_URL"] = stack.enter_context(postgres_database(args.pg_admin_url))
            env["BASCULE_REDIS_URL"] = stack.enter_context(redis_database(args.redis_url))
            database = env["BASCULE_DATABASE_URL"].rsplit("/", 1)[1]
        progress(f"initialising a {backend} instance in {tmp}")
        password = initialise(env, EMAIL)
        client = register(env)
        progress(f"starting gunicorn with {args.workers} workers on port {port}")
        log = tmp / "gunicorn.log"
        master = stack.enter_context(gunicorn(env, port, args.workers, log, gunicorn_extra))
        yield port, master, database, password, client, tmp


def prepare_grants(
    port: int, client: Registered, password: str, scope: str, count: int
) -> tuple[list[Grant], dict[str, Any]]:
    """One grant per client loop, each through a whole code flow; and one token response."""
    grants, last = [], {}
    for _ in range(count):
        try:
            last = code_flow(port, client, password, scope)
        except FlowError as exc:
            raise SystemExit(f"preparing a grant failed: {exc}") from None
        grants.append(Grant(last["refresh_token"]))
    return grants, last


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> Report:
    backend = "sqlite" if args.sqlite else "postgres+redis"
    slice_seconds = args.seconds / args.repeats
    refs: list[Reference] = []
    loads: list[Slice] = []
    with instance(args, progress, []) as (port, master, database, password, client, _tmp):
        progress(f"preparing {args.clients} grants through the code flow")
        grants, sample = prepare_grants(port, client, password, args.scope, args.clients)
        # The reference must sign with what the server signs with: same algorithm, same key.
        jwts = [sample[k] for k in ("access_token", "id_token") if k in sample]
        for token in jwts:
            header = _jwt_header(token)
            if (header.get("alg"), header.get("kid")) != ("RS256", client.kid):
                raise SystemExit(f"the server signs with {header}, not RS256 {client.kid}")
        progress(f"warming up: refresh grants for {args.warmup:g}s")
        warm = refresh_slice(port, client, grants, args.warmup, master, database, not args.sqlite)
        if warm.errors:
            progress(f"errors during the warm-up: {warm.errors}")
        for repeat in range(1, args.repeats + 1):
            progress(f"[{repeat}/{args.repeats}] Signer.sign (RS256) alone, {slice_seconds:g}s")
            refs.append(sign_slice(client.kid, client.private_jwk, args.workers, slice_seconds))
            progress(f"[{repeat}/{args.repeats}] POST {TOKEN_PATH} (refresh), {slice_seconds:g}s")
            loads.append(
                refresh_slice(
                    port, client, grants, slice_seconds, master, database, not args.sqlite
                )
            )
            if loads[-1].errors:
                progress(f"errors: {loads[-1].errors}")
        flows = None
        if args.flow_seconds > 0:
            progress(f"code-flow sign-ins (bcrypt cost {args.rounds}), {args.flow_seconds:g}s")
            flows = flow_slice(
                port, client, password, args.scope, args.flow_clients, args.flow_seconds
            )

    reference = statistics.fmean(r.rate for r in refs)
    grants_rate = statistics.fmean(s.rate for s in loads)
    ratio = grants_rate / reference
    done = sum(s.done for s in loads)
    latencies = [x for s in loads for x in s.latencies]
    errors: Counter[str] = Counter()
    for s in loads:
        errors.update(s.errors)
    usage = [s.usage for s in loads]
    per_grant = {
        "workers": sum(u.workers for u in usage),
        "workers_in_kernel": sum(u.workers_kernel for u in usage),
        "database": sum(u.database for u in usage),
        "redis": sum(u.redis for u in usage),
        "load_generator": sum(u.loadgen for u in usage),
        "other": sum(u.other for u in usage),
    }
    quiet = [
        i
        for i, (r, s) in enumerate(zip(refs, loads, strict=True))
        if not (r.other > NOISY or s.usage.share(s.usage.other) > NOISY)
    ]
    ratio_quiet = (
        statistics.fmean(loads[i].rate for i in quiet)
        / statistics.fmean(refs[i].rate for i in quiet)
        if quiet
        else math.nan
    )
    wall = sum(u.wall for u in usage)
    return Report(
        backend=backend,
        workers=args.workers,
        clients=args.clients,
        seconds=args.seconds,
        repeats=args.repeats,
        scope=args.scope,
        signing_key=f"RS256 {client.kid}",
        jwts_per_grant=len(jwts),
        signatures_per_second=round(reference, 1),
        refresh_grants_per_second=round(grants_rate, 1),
        ratio=round(ratio, 4),
        ratio_per_repeat=[round(s.rate / r.rate, 4) for s, r in zip(loads, refs, strict=True)],
        quiet_repeats=len(quiet),
        ratio_quiet=None if math.isnan(ratio_quiet) else round(ratio_quiet, 4),
        target=TARGET_RATIO,
        meets_target=ratio >= TARGET_RATIO,
        latency_ms_p50=_quantile(latencies, 50),
        latency_ms_p99=_quantile(latencies, 99),
        refresh_grants=done,
        refresh_errors=dict(errors),
        connections_per_request=round(
            sum(s.connections for s in loads) / max(1, sum(s.requests for s in loads)), 3
        ),
        cpu_ms_per_signature=round(1000 * sum(r.cpu for r in refs) / sum(r.done for r in refs), 3),
        cpu_ms_per_grant={k: round(1000 * v / max(1, done), 3) for k, v in per_grant.items()},
        loadgen_share=round(per_grant["load_generator"] / (wall * (os.cpu_count() or 1)), 4),
        other_share_per_repeat=[
            (round(r.other, 3), round(s.usage.share(s.usage.other), 3))
            for r, s in zip(refs, loads, strict=True)
        ],
        bcrypt_rounds=args.rounds,
        code_flow_sign_ins_per_second=round(flows.rate, 2) if flows else None,
        code_flows=flows.done if flows else 0,
        failed_code_flows=flows.failed if flows else 0,
    )


def print_report(r: Report) -> None:
    print(
        f"(a) reference: Signer.sign alone, {r.signing_key[:5]} with the instance's key "
        f"({r.workers} processes): {r.signatures_per_second:.0f} tokens/s "
        f"({r.cpu_ms_per_signature:.3f} ms CPU each)"
    )
    print(
        f"(b) refresh-token grants through gunicorn ({r.workers} workers, {r.backend}, "
        f"{r.clients} clients, client_secret_basic): {r.refresh_grants_per_second:.1f}/s"
    )
    print(
        f"    latency p50 {r.latency_ms_p50} ms, p99 {r.latency_ms_p99} ms; "
        f"{r.refresh_grants} grants answered 200; errors: {r.refresh_errors or 'none'}"
    )
    print(
        f"    each answer carries {r.jwts_per_grant} JWTs; connections opened per request: "
        f"{r.connections_per_request:g} (gunicorn's sync workers close every connection)"
    )
    spent = dict(r.cpu_ms_per_grant)
    kernel = spent.pop("workers_in_kernel")
    parts = ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in spent.items())
    print(f"    CPU ms per grant: {parts} (of the workers' CPU, {kernel:.2f} in the kernel)")
    verdict = "PASS" if r.meets_target else "BELOW"
    spread = ", ".join(f"{x:.4f}" for x in r.ratio_per_repeat)
    print(
        f"(c) ratio (b)/(a): {r.ratio:.4f} (target >= {r.target}) {verdict}   "
        f"[per repeat: {spread}]"
    )
    loadgen = "" if r.loadgen_share <= LOADGEN_LIMIT else "  TOO HIGH: it starves the server"
    print(f"    load generator's share of all CPUs during (b): {r.loadgen_share:.1%}{loadgen}")
    if r.quiet_repeats == r.repeats:
        most = max(max(pair) for pair in r.other_share_per_repeat)
        print(f"    other processes took at most {most:.0%} of the CPUs in any slice (quiet)")
    else:
        loads = ", ".join(f"{a:.0%}/{b:.0%}" for a, b in r.other_share_per_repeat)
        print(f"    CPU share other processes took, per repeat (reference/refresh): {loads}")
        if r.ratio_quiet is None:
            print("    warning: no repeat had the CPUs to itself; the rates are not comparable")
        else:
            print(
                f"    ratio over the {r.quiet_repeats} quiet repeat(s) "
                f"(others <= {NOISY:.0%} on both sides): {r.ratio_quiet:.4f}"
            )
    if r.code_flow_sign_ins_per_second is not None:
        print(
            f"(d) full code-flow sign-ins (authorize, login with bcrypt cost {r.bcrypt_rounds}, "
            f"code, token): {r.code_flow_sign_ins_per_second:.2f}/s "
            f"({r.code_flows} done, {r.failed_code_flows} failed; informational)"
        )


# ---------------------------------------------------------------------------------------------
# --profile: the refresh load under pyinstrument in every worker, SQL statements counted


def profile(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    """Where a refresh grant's time goes, two ways, each over a --seconds refresh load:

    1. py-spy (when installed) sampling each worker from outside: CPU only (idle samples are
       left out), and hardly slower than unprofiled, so the shares are the CPU's.
    2. pyinstrument inside each worker (``_profile_gunicorn.py``), with the SQL statements and
       Redis commands counted: wall time, so waiting for PostgreSQL shows; its per-call hook
       slows Python-heavy code (SQLAlchemy) more than C (RSA), so its shares lean that way.
    """
    out = Path(args.profile).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("worker-*"), *out.glob("py-spy-*"), out / "ON", out / "PLAIN"]:
        old.unlink(missing_ok=True)
    config = Path(__file__).with_name("_profile_gunicorn.py")
    extra = ["--config", str(config), "--env", f"BASCULE_BENCH_PROFILE_DIR={out}"]
    redis = not args.sqlite
    spy = shutil.which("py-spy")
    result: dict[str, Any] = {"backend": "sqlite" if args.sqlite else "postgres+redis"}
    with instance(args, progress, extra) as (port, master, database, password, client, _tmp):
        progress(f"preparing {args.clients} grants through the code flow")
        grants, _ = prepare_grants(port, client, password, args.scope, args.clients)
        refresh_slice(port, client, grants, args.warmup, master, database, redis)
        if spy is None:
            progress("py-spy is not installed (pip install py-spy): no CPU profile")
        what = "py-spy on the workers" if spy else "counting statements"
        progress(f"{what} during POST {TOKEN_PATH} (refresh), {args.seconds:g}s")
        (out / "PLAIN").touch()
        waits: Counter[str] = Counter()
        try:
            with contextlib.ExitStack() as watching:
                if spy:
                    watching.enter_context(py_spy(spy, children_of(master), args.seconds, out))
                if database:
                    watching.enter_context(pg_waits(args.pg_admin_url, database, waits))
                plain = refresh_slice(port, client, grants, args.seconds, master, database, redis)
        finally:
            (out / "PLAIN").unlink(missing_ok=True)
        if waits:
            total = sum(waits.values())
            result["postgres_backends"] = {k: round(v / total, 3) for k, v in _ranked(waits)}
        progress(f"pyinstrument in the workers during POST {TOKEN_PATH}, {args.seconds:g}s")
        (out / "ON").touch()
        try:
            load = refresh_slice(port, client, grants, args.seconds, master, database, redis)
        finally:
            (out / "ON").unlink(missing_ok=True)
        progress("stopping gunicorn; the workers write their reports")
    stats = [json.loads(p.read_text()) for p in sorted(out.glob("worker-*.json"))]
    result["plain"] = _plain_summary([s["plain"] for s in stats], plain)
    if spy:
        result["py_spy"] = _py_spy_summary(out, plain)
    result["pyinstrument"] = _pyinstrument_summary([s["pyinstrument"] for s in stats], out, load)
    return result


@contextlib.contextmanager
def py_spy(spy: str, pids: list[int], seconds: float, out: Path) -> Iterator[None]:
    """py-spy recording each of ``pids`` (raw collapsed stacks) for the enclosed load."""

    def command(pid: int) -> list[str]:
        return [
            spy, "record", "--pid", str(pid), "--duration", str(math.ceil(seconds) + 1),
            "--rate", str(PY_SPY_RATE), "--format", "raw", "--full-filenames", "--nonblocking",
            "--output", str(out / f"py-spy-{pid}.txt"),
        ]  # fmt: skip

    recorders = [
        subprocess.Popen(command(pid), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for pid in pids
    ]
    try:
        time.sleep(1.0)  # attaching takes a moment; idle samples are not recorded anyway
        yield
        for recorder in recorders:
            recorder.wait(timeout=seconds + 30)
    finally:
        for recorder in recorders:
            if recorder.poll() is None:
                recorder.kill()
                recorder.wait(timeout=5)


_PY_SPY_FRAME = re.compile(r"^(.*) \((.*):\d+\)$")


def _py_spy_summary(out: Path, load: Slice) -> dict[str, Any]:
    from _profile_gunicorn import split

    def samples() -> Iterator[tuple[list[tuple[str, str]], float]]:
        for path in sorted(out.glob("py-spy-*.txt")):
            for line in path.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                frames = []
                for frame in stack.split(";"):
                    match = _PY_SPY_FRAME.match(frame)
                    frames.append((match.group(1), match.group(2)) if match else (frame, ""))
                yield frames, float(count)

    operations, libraries, total = split(samples())
    cpu_ms = 1000 * load.usage.workers / max(1, load.done)

    def share(samples: float) -> dict[str, float]:
        part = samples / (total or 1.0)
        return {"share": round(part, 3), "cpu_ms_per_grant": round(part * cpu_ms, 3)}

    return {
        "grants": load.done,
        "rate_under_py_spy": round(load.rate, 1),
        "worker_cpu_ms_per_grant": round(cpu_ms, 3),
        "worker_kernel_cpu_ms_per_grant": round(
            1000 * load.usage.workers_kernel / max(1, load.done), 3
        ),
        "database_cpu_ms_per_grant": round(1000 * load.usage.database / max(1, load.done), 3),
        "samples": int(total),
        "operations_inclusive": {k: share(v) for k, v in _ranked(operations)},
        "libraries_exclusive": {k: share(v) for k, v in _ranked(libraries)},
        "raw_stacks": [str(p) for p in sorted(out.glob("py-spy-*.txt"))],
    }


def _ranked(weights: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(weights.items(), key=lambda item: -item[1])


@contextlib.contextmanager
def pg_waits(admin_url: str, database: str, waits: Counter[str]) -> Iterator[None]:
    """Sample what the run's PostgreSQL backends are doing (pg_stat_activity) every 5 ms:
    running, idle between statements, or waiting, and on what (a row lock, the WAL flush)."""
    import psycopg

    stop = threading.Event()
    query = (
        "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()"
    )

    def sample() -> None:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            while not stop.wait(0.005):
                for state, kind, event in conn.execute(query, (database,)).fetchall():
                    if state == "idle":
                        waits["idle (between requests: no transaction)"] += 1
                    elif kind is None:
                        waits[f"{state}: running"] += 1
                    else:
                        waits[f"{state}: waiting, {kind} {event}"] += 1

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _statements(stats: list[dict[str, Any]]) -> tuple[int, Counter[str], float]:
    """Requests, statements by kind, and SQL statements (not checkouts, not Redis) per request."""
    requests = sum(s["requests"] for s in stats) or 1
    statements: Counter[str] = Counter()
    for s in stats:
        statements.update(s["statements"])
    sql = sum(v for k, v in statements.items() if not k.startswith(("redis", "(pool")))
    return requests, statements, sql / requests


def _plain_summary(stats: list[dict[str, Any]], load: Slice) -> dict[str, Any]:
    """What the workers measured of themselves with no profiler running."""
    requests, statements, sql = _statements(stats)

    def ms(key: str) -> float:
        return round(1000 * sum(s[key] for s in stats) / requests, 3)

    return {
        "requests": requests,
        "rate": round(load.rate, 1),
        "worker_cpu_ms_per_grant": round(1000 * load.usage.workers / max(1, load.done), 3),
        "request_wall_ms": ms("request_seconds"),
        "request_cpu_ms": ms("request_cpu_seconds"),
        "sql_statements_per_request": round(sql, 2),
        "sql_wall_ms": ms("sql_seconds"),
        "sql_cpu_ms": ms("sql_cpu_seconds"),
        "statements_per_request": {k: round(v / requests, 2) for k, v in statements.most_common()},
        "statements_of_one_request": next((s["traces"][0] for s in stats if s["traces"]), []),
        "cpu_ms_inclusive": {
            k: round(1000 * v / requests, 3)
            for k, v in _ranked(sum((Counter(s["timers"]) for s in stats), Counter()))
        },
        "wall_ms_inclusive": {
            k: round(1000 * v / requests, 3)
            for k, v in _ranked(sum((Counter(s["timers_wall"]) for s in stats), Counter()))
        },
    }


def _pyinstrument_summary(stats: list[dict[str, Any]], out: Path, load: Slice) -> dict[str, Any]:
    requests, _, _ = _statements(stats)
    sampled = sum(s.get("sampled_seconds", 0.0) for s in stats) or 1.0
    operations: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    for s in stats:
        operations.update(s.get("operations", {}))
        libraries.update(s.get("libraries", {}))

    def per_request(seconds: float) -> dict[str, float]:
        return {"share": round(seconds / sampled, 3), "ms": round(1000 * seconds / requests, 3)}

    return {
        "profiled_requests": requests,
        "grants_answered_200": load.done,
        "errors": load.errors,
        "rate_under_the_profiler": round(load.rate, 1),
        "worker_cpu_ms_per_grant": round(1000 * load.usage.workers / max(1, load.done), 3),
        "sampled_wall_ms_per_request": round(1000 * sampled / requests, 3),
        "operations_inclusive": {k: per_request(v) for k, v in operations.most_common()},
        "libraries_exclusive": {k: per_request(v) for k, v in libraries.most_common()},
        "call_trees": [str(p) for p in sorted(out.glob("worker-*.txt"))],
    }


def print_profile(summary: dict[str, Any]) -> None:
    plain, spy, inside = summary["plain"], summary.get("py_spy"), summary["pyinstrument"]
    print(f"Profile of POST {TOKEN_PATH} (refresh grants), {summary['backend']}")
    if "postgres_backends" in summary:
        print("\nthe run's PostgreSQL backends, sampled every 5 ms (pg_stat_activity):")
        for state, share in summary["postgres_backends"].items():
            print(f"  {share:6.1%}  {state}")
    print(
        f"\nmeasured by the workers themselves, no profiler ({plain['requests']} requests, "
        f"{plain['rate']:.0f} grants/s{' with py-spy attached' if spy else ''}):\n"
        f"  worker CPU per grant {plain['worker_cpu_ms_per_grant']:.2f} ms (/proc, with gunicorn)"
        f"; in the WSGI app {plain['request_cpu_ms']:.2f} ms CPU, {plain['request_wall_ms']:.2f}"
        f" ms wall\n  {plain['sql_statements_per_request']:g} SQL statements per grant: "
        f"{plain['sql_wall_ms']:.2f} ms wall and {plain['sql_cpu_ms']:.2f} ms CPU in "
        "cursor.execute (driver and socket; SQLAlchemy's ORM work around it is not included)"
    )
    for name, count in plain["statements_per_request"].items():
        print(f"  {count:5g}  {name}")
    print("  per grant inside (inclusive; CPU is this thread's, so waiting does not count):")
    print("       CPU      wall")
    for name, ms in plain["cpu_ms_inclusive"].items():
        print(f"    {ms:6.2f} ms {plain['wall_ms_inclusive'].get(name, 0.0):6.2f} ms  {name}")
    if spy is not None:
        print(
            f"\npy-spy, CPU samples of the workers ({spy['samples']} samples; worker CPU "
            f"{spy['worker_cpu_ms_per_grant']:.2f} ms per grant, "
            f"{spy['worker_kernel_cpu_ms_per_grant']:.2f} ms of it in the kernel; PostgreSQL "
            f"{spy['database_cpu_ms_per_grant']:.2f} ms)"
        )
        for title, key in (
            ("inclusive", "operations_inclusive"),
            ("by library", "libraries_exclusive"),
        ):
            print(f"  {title}:")
            for name, part in spy[key].items():
                print(f"    {part['share']:6.1%}  {part['cpu_ms_per_grant']:6.2f} ms  {name}")
    print(
        f"\npyinstrument, wall time inside the workers ({inside['profiled_requests']} requests, "
        f"{inside['sampled_wall_ms_per_request']:.2f} ms each under the profiler, "
        f"{inside['rate_under_the_profiler']:.0f} grants/s meanwhile)"
    )
    for title, key in (
        ("inclusive", "operations_inclusive"),
        ("by library", "libraries_exclusive"),
    ):
        print(f"  {title}:")
        for name, part in inside[key].items():
            print(f"    {part['share']:6.1%}  {part['ms']:6.2f} ms  {name}")
    print("\ncall trees: " + ", ".join(inside["call_trees"]))
    if spy is not None:
        print("py-spy stacks (collapsed): " + ", ".join(spy["raw_stacks"]))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="time for each kind of load (default 20)"
    )
    parser.add_argument(
        "--repeats", type=int, default=4, help="alternating slices the time is cut into"
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="refresh load not counted (3)")
    parser.add_argument("--workers", type=int, default=cores, help="gunicorn workers (cores)")
    parser.add_argument(
        "--clients", type=int, help="refresh loops, one grant each (default: 2 per worker)"
    )
    parser.add_argument("--sqlite", action="store_true", help="SQLite + SQL store instead")
    parser.add_argument(
        "--rounds", type=int, default=12, help="bcrypt cost (BASCULE_BCRYPT_ROUNDS, default 12)"
    )
    parser.add_argument(
        "--flow-seconds", type=float, default=10.0, help="code-flow sign-ins (0: skip)"
    )
    parser.add_argument("--flow-clients", type=int, help="code-flow loops (default: --workers)")
    parser.add_argument("--scope", default=SCOPE, help=f"scope of the grants ({SCOPE!r})")
    parser.add_argument(
        "--pg-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="where to create (and drop) the run's database",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="profile the refresh load instead (pyinstrument in each worker; reports in DIR)",
    )
    args = parser.parse_args(argv)
    args.clients = args.clients or 2 * args.workers
    args.flow_clients = args.flow_clients or args.workers
    if not 4 <= args.rounds <= 31:
        parser.error("--rounds is a bcrypt cost, 4 to 31")
    if args.seconds <= 0 or args.warmup < 0 or args.flow_seconds < 0:
        parser.error("--seconds must be positive, --warmup and --flow-seconds not negative")
    if min(args.repeats, args.workers, args.clients, args.flow_clients) < 1:
        parser.error("--repeats, --workers, --clients and --flow-clients must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.profile:
        summary = until_done(lambda: profile(args, progress))
        if summary is None:
            return INTERRUPTED
        show(summary, args.json, print_profile)
        return 0
    report = until_done(lambda: run(args, progress))
    if report is None:
        return INTERRUPTED
    show(report, args.json, print_report)
    return 1 if report.refresh_errors or report.failed_code_flows else 0


if __name__ == "__main__":
    sys.exit(main())
