"""SAML sign-ins per second through gunicorn's ACS, against python3-saml's validation alone.

Checking a response is the cost a SAML sign-in cannot avoid: parse, validate against the
schema, canonicalise, verify the IdP's RSA signature, check the conditions. Everything else
(HTTP, the parked response and its same-site hop, the replay cache, provisioning, the audit
chain, the session) comes on top. This script measures both in one run, on a throwaway
instance, and prints the ratio; the issue sets no target figure.

    python bench/saml.py                  # SQLite, the embedded default
    python bench/saml.py --postgres       # PostgreSQL + Redis
    python bench/saml.py --json --seconds 10

The instance has an organisation ``acme`` connected (``bascule saml add``) to an IdP that
exists only here: a key pair made by ``tests/saml/forge.py`` and metadata as the tests'
``FakeIdp`` writes it, with IdP-initiated sign-in allowed. Every response is unsolicited,
signed by that key (the assertion, RSA-SHA256), addressed to the ACS and to the connection's
SP entity ID, and has an assertion ID of its own, since each is accepted once. They are forged
before each timed slice, in parallel processes, outside the measured time.

(a) the reference: ``OneLogin_Saml2_Response(settings, response).is_valid(request_data)`` with
    the very settings the workers use (``sp.settings_for`` on the connection), in one process
    per gunicorn worker;
(b) sign-ins: ``POST /saml/corp/acs`` then ``GET`` the address it answers with (where the
    response is validated), from ``--concurrency`` client threads; one counts when the GET
    answers 303 to ``/account`` with a session cookie. The ``--users`` people were created
    (JIT) by a warm-up, so the timed sign-ins are returning ones.

As in ``login.py``, (a) and (b) alternate in ``--repeats`` slices and the CPU other processes
took is measured for each; over 5% the slice is NOISY and the ratio over the quiet repeats is
printed too. Run by hand, not by pytest: it takes every core for about a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from _harness import (
    INTERRUPTED,
    NOISY,
    ROOT,
    Tally,
    accounted,
    backends_of,
    base_environment,
    free_port,
    gunicorn,
    in_processes,
    initialise,
    postgres_database,
    processes_named,
    progress,
    ratio_over_quiet,
    redis_database,
    request,
    rounded,
    show,
    timed_loops,
    until_done,
)

EMAIL = "bench@bench.test"  # the instance's owner (``bascule init``); not signed in here
ORG, SLUG, DOMAIN = "acme", "corp", "corp.example"
SIGNED_IN = "/account"  # where an IdP-initiated sign-in without RelayState goes
LIFETIME = 3600.0  # seconds a forged response stays valid (python3-saml reads the wall clock)
MAX_SECONDS = 1200.0  # both sides of a run, forging included, well within LIFETIME
CHUNK = 50  # responses per forging task
REFERENCE_RESPONSES = 200  # distinct responses each reference process validates in turn


# ---------------------------------------------------------------------------------------------
# The IdP: responses forged with the tests' toolkit (tests/saml/forge.py)


def _importable_tests() -> None:
    """``tests.saml`` from the repository root (not installed; ``python bench/saml.py`` puts
    only ``bench/`` on the path). Spawned processes inherit the path."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Idp:
    """What forging a response needs: the IdP's keys and where the response is addressed."""

    keys: Any  # tests.saml.forge.KeyPair
    entity_id: str
    acs_url: str
    audience: str  # the connection's SP entity ID
    users: int


def _forge(idp: Idp, first: int, count: int) -> list[str]:
    """``count`` signed, unsolicited responses (the SAMLResponse field), for users in turn."""
    from tests.saml import forge

    now, out = time.time(), []
    for n in range(first, first + count):
        person = f"user{n % idp.users}@{DOMAIN}"
        claims = forge.Claims(
            now=now,
            in_response_to=None,
            lifetime=LIFETIME,
            issuer=idp.entity_id,
            destination=idp.acs_url,
            recipient=idp.acs_url,
            audience=idp.audience,
            name_id=person,
            attributes={
                "email": [person],
                "givenName": [f"User {n % idp.users}"],
                "sn": ["Bench"],
                "groups": ["staff"],
            },
        )
        out.append(forge.to_b64(forge.sign_assertion(forge.build_response(claims), idp.keys)))
    return out


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the pool on Ctrl-C


class Forger:
    """Distinct responses on demand, signed in a pool of processes (RSA signing is slow)."""

    def __init__(self, pool: ProcessPoolExecutor, idp: Idp) -> None:
        self.pool, self.idp, self.made = pool, idp, 0

    def make(self, count: int) -> list[str]:
        starts = range(self.made, self.made + count, CHUNK)
        sizes = [min(CHUNK, self.made + count - s) for s in starts]
        self.made += count
        return [
            r
            for chunk in self.pool.map(_forge, [self.idp] * len(sizes), starts, sizes)
            for r in chunk
        ]


# ---------------------------------------------------------------------------------------------
# (a) Reference: python3-saml's validation alone, one process per gunicorn worker


def _validate_loop(
    settings: Any, acs_url: str, responses: list[str], seconds: float, barrier: Any, results: Any
) -> None:
    """One process validating responses in turn until its time is up; count, wall, CPU."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us on Ctrl-C
    from onelogin.saml2.response import OneLogin_Saml2_Response

    from idp.services.saml import sp  # also its clock skew (two minutes), as in the workers

    data = [(r, sp.request_data(acs_url, post={"SAMLResponse": r})) for r in responses]
    OneLogin_Saml2_Response(settings, data[0][0]).is_valid(data[0][1], raise_exceptions=True)
    barrier.wait()
    start, cpu = time.monotonic(), time.process_time()
    deadline = start + seconds
    count, last = 0, start
    while last < deadline:
        response, request_data = data[count % len(data)]
        if not OneLogin_Saml2_Response(settings, response).is_valid(request_data):
            raise SystemExit("python3-saml refused a response the bench forged")
        count += 1
        last = time.monotonic()
    results.put((count, last - start, time.process_time() - cpu))


def validate_slice(
    settings: Any, acs_url: str, responses: list[str], processes: int, seconds: float
) -> Tally:
    runs, other = in_processes(_validate_loop, (settings, acs_url, responses), processes, seconds)
    return Tally(
        done=sum(r[0] for r in runs),
        failed=0,
        rate=sum(r[0] / r[1] for r in runs),
        cpu=sum(r[2] for r in runs),
        other=other,
    )


# ---------------------------------------------------------------------------------------------
# The instance: an organisation connected to the IdP through the CLI, as an operator does it


def bascule(env: dict[str, str], *args: str) -> str:
    """One ``bascule`` command of this install; its standard output."""
    script = Path(sys.executable).with_name("bascule")
    done = subprocess.run(
        [str(script), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"bascule {' '.join(args)} failed:\n{done.stderr or done.stdout}")
    return done.stdout


def connect(env: dict[str, str], tmp: Path, users: int) -> tuple[Idp, Any]:
    """``acme`` connected as ``corp`` to a new IdP; the IdP, and python3-saml's settings for
    the connection as the workers build them."""
    from tests.saml import forge
    from tests.saml.support import FakeIdp

    fake = FakeIdp(keys=forge.make_key_pair("bench-idp"))
    metadata = tmp / "idp-metadata.xml"
    metadata.write_text(fake.metadata())
    bascule(env, "orgs", "create", ORG, "--name", "Acme")
    command = ["saml", "add", ORG, "--slug", SLUG, "--metadata-file", str(metadata)]
    added = json.loads(bascule(env, *command, "--domain", DOMAIN, "--idp-initiated", "--json"))
    idp = Idp(fake.keys, fake.entity_id, added["acs_url"], added["sp_entity_id"], users)

    from idp.cli._common import app_context
    from idp.config import load
    from idp.runtime import runtime
    from idp.services.saml import connections, sp

    with app_context(load(env)):
        rt = runtime()
        settings = sp.settings_for(connections.get(SLUG), rt.settings.issuer, rt.keyring)
    return idp, settings


# ---------------------------------------------------------------------------------------------
# (b) Sign-ins through the ACS, as the IdP's page and then the browser make them


def sign_in(port: int, response: str, failures: Counter[str]) -> float | None:
    """POST the response to the ACS, follow its same-site hop; the time taken, None if the
    sign-in failed (its reason counted in ``failures``)."""
    began = time.perf_counter()
    posted = request(port, "POST", f"/saml/{SLUG}/acs", urlencode({"SAMLResponse": response}))
    if posted.status != 303 or not posted.location:
        failures[f"POST acs: {posted.status}"] += 1
        return None
    hop = urlsplit(posted.location)
    answer = request(port, "GET", f"{hop.path}?{hop.query}", cookie=posted.cookie or "")
    if answer.status != 303 or answer.location != SIGNED_IN or answer.cookie is None:
        reason = f"GET acs: {answer.status} to {answer.location}"
        failures[reason if answer.status == 303 else f"GET acs: {answer.status}"] += 1
        return None
    return time.perf_counter() - began


def acs_slice(
    port: int,
    responses: list[str],
    clients: int,
    seconds: float,
    latencies: list[float],
    failures: Counter[str],
) -> Tally:
    """Sign-ins from the responses forged beforehand, each used once."""
    lock = threading.Lock()

    def step() -> bool | None:
        with lock:
            if not responses:
                return None
            response = responses.pop()
        took = sign_in(port, response, failures)
        if took is not None:
            latencies.append(took)  # list.append is atomic
        return took is not None

    return timed_loops(clients, seconds, step)


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    backend: str
    workers: int
    concurrency: int
    users: int
    seconds: float
    repeats: int
    other_load_per_repeat: list[tuple[float | None, float | None]]
    validations_per_second: float
    sign_ins_per_second: float
    ratio: float
    ratio_per_repeat: list[float]
    quiet_repeats: int
    ratio_quiet: float | None
    latency_ms_p50: float | None
    latency_ms_p99: float | None
    cpu_ms_per_validation: float
    worker_cpu_ms_per_sign_in: float | None
    cpu_ratio: float | None
    sign_ins: int
    failed_sign_ins: int
    failures: dict[str, int]
    starved: bool


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> Report:
    backend = "postgres+redis" if args.postgres else "sqlite"
    slice_seconds = args.seconds / args.repeats
    refs: list[Tally] = []
    loads: list[Tally] = []
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bascule-bench-saml-")))
        port = free_port()
        env = base_environment(tmp, port, 12)  # no password is checked here
        database = ""
        if args.postgres:
            env["BASCULE_DATABASE_URL"] = stack.enter_context(postgres_database(args.pg_admin_url))
            env["BASCULE_REDIS_URL"] = stack.enter_context(redis_database(args.redis_url))
            database = env["BASCULE_DATABASE_URL"].rsplit("/", 1)[1]
        progress(f"initialising a {backend} instance in {tmp}")
        initialise(env, EMAIL)
        idp, settings = connect(env, tmp, args.users)
        spawn = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(args.workers, mp_context=spawn, initializer=_ignore_sigint)
        stack.callback(pool.shutdown, cancel_futures=True)  # on Ctrl-C, forge nothing more
        forger = Forger(pool, idp)
        reference_responses = forger.make(REFERENCE_RESPONSES)

        progress(f"starting gunicorn with {args.workers} workers on port {port}")
        master = stack.enter_context(gunicorn(env, port, args.workers, tmp / "gunicorn.log"))
        progress(f"warming up: the first sign-in of each of {args.users} users (JIT accounts)")
        for response in forger.make(args.users):
            if sign_in(port, response, failures) is None:
                raise SystemExit(f"a warm-up sign-in failed ({dict(failures)}); see the log")
        failures.clear()

        responses: list[str] = []
        for repeat in range(1, args.repeats + 1):
            progress(f"[{repeat}/{args.repeats}] python3-saml is_valid alone, {slice_seconds:g}s")
            refs.append(
                validate_slice(
                    settings, idp.acs_url, reference_responses, args.workers, slice_seconds
                )
            )
            # Half as many again as the reference rate needs, so the loops never starve;
            # what a slice leaves is still fresh for the next one.
            needed = math.ceil(refs[-1].rate * slice_seconds * 1.5) + 4 * args.concurrency
            if needed > len(responses):
                progress(f"[{repeat}/{args.repeats}] forging {needed - len(responses)} responses")
                responses += forger.make(needed - len(responses))
            progress(f"[{repeat}/{args.repeats}] POST + GET /saml/{SLUG}/acs, {slice_seconds:g}s")
            servers = [*backends_of(database), *processes_named("redis-server")] if database else []
            loads.append(
                accounted(
                    master,
                    servers,
                    partial(
                        acs_slice,
                        port,
                        responses,
                        args.concurrency,
                        slice_seconds,
                        latencies,
                        failures,
                    ),
                )
            )
            if loads[-1].failed:
                progress(f"failed sign-ins so far: {dict(failures)}")
            if loads[-1].starved:
                progress("note: the forged responses ran out; the rate covers the time they lasted")

    reference = statistics.fmean(t.rate for t in refs)
    sign_ins = statistics.fmean(t.rate for t in loads)
    done = sum(t.done for t in loads)
    cpu_per_validation = sum(t.cpu for t in refs) / sum(t.done for t in refs)
    cpu_per_sign_in = sum(t.cpu for t in loads) / max(1, done)
    ratio_quiet, quiet_repeats = ratio_over_quiet(refs, loads)
    return Report(
        backend=backend,
        workers=args.workers,
        concurrency=args.concurrency,
        users=args.users,
        seconds=args.seconds,
        repeats=args.repeats,
        other_load_per_repeat=[
            (rounded(r.other, 3), rounded(p.other, 3)) for r, p in zip(refs, loads, strict=True)
        ],
        validations_per_second=round(reference, 2),
        sign_ins_per_second=round(sign_ins, 2),
        ratio=round(sign_ins / reference, 4),
        ratio_per_repeat=[round(p.rate / r.rate, 3) for p, r in zip(loads, refs, strict=True)],
        quiet_repeats=quiet_repeats,
        ratio_quiet=rounded(ratio_quiet, 4),
        latency_ms_p50=_quantile(latencies, 50),
        latency_ms_p99=_quantile(latencies, 99),
        cpu_ms_per_validation=round(1000 * cpu_per_validation, 2),
        worker_cpu_ms_per_sign_in=rounded(1000 * cpu_per_sign_in, 2),
        cpu_ratio=rounded(cpu_per_validation / cpu_per_sign_in, 4) if done else None,
        sign_ins=done,
        failed_sign_ins=sum(t.failed for t in loads),
        failures=dict(failures),
        starved=any(t.starved for t in loads),
    )


def _quantile(values: list[float], q: int) -> float | None:
    if len(values) < 2:
        return None
    return round(1000 * statistics.quantiles(values, n=100, method="inclusive")[q - 1], 2)


def _percent(share: float | None) -> str:
    return "?" if share is None else f"{share:.0%}"


def print_report(r: Report) -> None:
    print(
        f"(a) python3-saml validation alone (OneLogin_Saml2_Response.is_valid, {r.workers} "
        f"processes): {r.validations_per_second:.1f}/s ({r.cpu_ms_per_validation:.2f} ms CPU each)"
    )
    print(
        f"(b) SAML sign-ins through gunicorn ({r.workers} workers, {r.backend}, "
        f"{r.concurrency} clients, POST + GET /saml/{SLUG}/acs): {r.sign_ins_per_second:.1f}/s"
    )
    print(
        f"    latency p50 {r.latency_ms_p50} ms, p99 {r.latency_ms_p99} ms; {r.sign_ins} "
        f"sign-ins of {r.users} returning users; failed: {r.failed_sign_ins}"
    )
    spread = ", ".join(f"{x:.3f}" for x in r.ratio_per_repeat)
    print(f"ratio (b)/(a): {r.ratio:.3f}   [per repeat: {spread}]")
    if r.cpu_ratio is not None:
        servers = " (database servers not included)" if r.backend != "sqlite" else ""
        print(
            f"CPU per sign-in in the workers{servers}: {r.worker_cpu_ms_per_sign_in:.2f} ms; "
            f"per is_valid alone: {r.cpu_ms_per_validation:.2f} ms; ratio {r.cpu_ratio:.3f}"
        )
    loads = ", ".join(f"{_percent(a)}/{_percent(b)}" for a, b in r.other_load_per_repeat)
    if r.quiet_repeats == r.repeats:
        print(f"quiet: CPU share other processes took, per repeat (reference/sign-ins): {loads}")
    else:
        print(f"NOISY: CPU share other processes took, per repeat (reference/sign-ins): {loads}")
        if r.ratio_quiet is None:
            print("warning: no repeat had the CPUs to itself; the rates are not comparable")
        else:
            print(
                f"ratio over the {r.quiet_repeats} quiet repeat(s) "
                f"(others <= {NOISY:.0%} on both sides): {r.ratio_quiet:.3f}"
            )
    if r.starved:
        print("note: the forged responses ran out in a slice; its rate covers the time they lasted")
    if r.failed_sign_ins:
        print(f"failed sign-ins: {r.failures} (the figures are not trustworthy)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="time for each kind of load (default 20)"
    )
    parser.add_argument(
        "--repeats", type=int, default=4, help="alternating slices the time is cut into"
    )
    parser.add_argument("--workers", type=int, default=cores, help="gunicorn workers (cores)")
    parser.add_argument("--concurrency", type=int, help="client loops (default: --workers)")
    parser.add_argument("--users", type=int, default=50, help="people signing in (default 50)")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL + Redis backend")
    parser.add_argument(
        "--pg-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="where to create (and drop) the run's database",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    args.concurrency = args.concurrency or args.workers
    if args.seconds <= 0 or min(args.repeats, args.workers, args.concurrency, args.users) < 1:
        parser.error("--seconds, --repeats, --workers, --concurrency and --users must be positive")
    if args.seconds > MAX_SECONDS:
        parser.error(f"--seconds at most {MAX_SECONDS:g}: the forged responses would expire")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _importable_tests()
    report = until_done(lambda: run(args, progress))
    if report is None:
        return INTERRUPTED
    show(report, args.json, print_report)
    return 1 if report.failed_sign_ins else 0


if __name__ == "__main__":
    sys.exit(main())
