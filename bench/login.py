"""Password sign-ins per second through gunicorn, against ``bcrypt.checkpw`` alone.

bcrypt is meant to be the whole cost of a sign-in; everything else (HTTP, CSRF, throttle,
database, audit chain, session) should be noise. This script measures both in one run, on a
throwaway instance, and prints the ratio. Target: >= 0.95 at cost 12.

    python bench/login.py                 # SQLite, the embedded default
    python bench/login.py --postgres      # PostgreSQL + Redis
    python bench/login.py --json --seconds 10 --rounds 10

A "sign-in" is the POST /login that verifies the password and answers 303 to /account with a
new session cookie (the owner has no second factor). Each POST needs a fresh anonymous session
and its CSRF token, which the GET /login page view hands out; those are fetched before each
timed POST slice, so the ratio is on the POST alone. A third kind of slice times GET + POST
together, as a browser does them.

The reference and the HTTP load never run at the same time, but they alternate in short slices
(``--repeats``): on a shared or throttled machine the CPU one gets drifts over a minute, and
alternating spreads that drift over both sides instead of charging it to one. It also measures
the CPU other processes took during each slice; where that exceeds 5% the rates are not
comparable, and it reports the ratio over the quiet repeats as well.

Run by hand, not by pytest: it takes every core for about a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import bcrypt
from _harness import (
    CSRF,
    INTERRUPTED,
    NOISY,
    Tally,
    accounted,
    backends_of,
    base_environment,
    free_port,
    gunicorn,
    in_processes,
    initialise,
    postgres_database,
    progress,
    ratio_over_quiet,
    redis_database,
    request,
    rounded,
    show,
    timed_loops,
    until_done,
)

TARGET_RATIO = 0.95
EMAIL = "bench@bench.test"
SIGNED_IN = "/account"  # where a complete sign-in without ``next`` goes

Form = tuple[str, str]  # an anonymous session cookie and the CSRF token bound to it


# ---------------------------------------------------------------------------------------------
# Reference: bcrypt.checkpw alone


def _checkpw_loop(hashed: bytes, seconds: float, barrier: Any, results: Any) -> None:
    """One process checking one password until its time is up; reports count, wall, CPU."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us on Ctrl-C
    secret = b"x" * 44  # the app's pre-hash is 44 base64 bytes; bcrypt sees the same length
    barrier.wait()
    start, cpu = time.monotonic(), time.process_time()
    deadline = start + seconds
    count, last = 0, start
    while last < deadline:
        if not bcrypt.checkpw(secret, hashed):
            raise SystemExit("bcrypt.checkpw refused its own hash")
        count += 1
        last = time.monotonic()
    results.put((count, last - start, time.process_time() - cpu))


def bcrypt_slice(hashed: bytes, processes: int, seconds: float) -> Tally:
    """checkpw per second with one process per gunicorn worker, all running at once.

    Also how much CPU everything else on the machine took meanwhile: the reference needs
    whole cores, so a busy neighbour makes both sides of the comparison noisy.
    """
    runs, other = in_processes(_checkpw_loop, (hashed,), processes, seconds)
    return Tally(
        done=sum(r[0] for r in runs),
        failed=0,
        rate=sum(r[0] / r[1] for r in runs),
        cpu=sum(r[2] for r in runs),
        other=other,
    )


# ---------------------------------------------------------------------------------------------
# The client (the instance, its server and the CPU accounting are in _harness.py)


def login_form(port: int) -> Form:
    """A fresh anonymous session and its CSRF token: what one sign-in POST needs."""
    answer = request(port, "GET", "/login")
    match = CSRF.search(answer.body.decode("utf-8", "replace"))
    if answer.status != 200 or answer.cookie is None or match is None:
        raise SystemExit(f"GET /login gave {answer.status} without a session cookie and token")
    return answer.cookie, match.group(1)


def sign_in(port: int, password: str, form: Form) -> bool:
    """POST /login; a success is a 303 to the account page with a new session cookie.

    Checking the target matters: a sign-in held for a second factor also answers 303 with a
    new cookie, but to the second-factor page.
    """
    cookie, token = form
    body = urlencode({"csrf_token": token, "email": EMAIL, "password": password})
    answer = request(port, "POST", "/login", body, cookie)
    return (
        answer.status == 303
        and answer.location == SIGNED_IN
        and answer.cookie is not None
        and answer.cookie != cookie
    )


def post_slice(port: int, password: str, forms: list[Form], clients: int, seconds: float) -> Tally:
    """Sign-ins (the POST alone) from forms fetched beforehand."""
    lock = threading.Lock()

    def step() -> bool | None:
        with lock:
            if not forms:
                return None
            form = forms.pop()
        return sign_in(port, password, form)

    return timed_loops(clients, seconds, step)


def full_slice(port: int, password: str, clients: int, seconds: float) -> Tally:
    """Sign-ins with their page view: GET /login then POST /login, as a browser does."""
    return timed_loops(clients, seconds, lambda: sign_in(port, password, login_form(port)))


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    backend: str
    rounds: int
    workers: int
    concurrency: int
    seconds: float
    repeats: int
    other_load: float | None
    other_load_per_repeat: list[tuple[float | None, float | None]]
    bcrypt_per_second: float
    sign_ins_per_second: float
    sign_ins_with_page_view_per_second: float | None
    ratio: float
    ratio_per_repeat: list[float]
    quiet_repeats: int
    ratio_quiet: float | None
    target: float
    meets_target: bool
    cpu_ms_per_checkpw: float
    worker_cpu_ms_per_sign_in: float | None
    cpu_ratio: float | None
    sign_ins: int
    failed_sign_ins: int


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> Report:
    backend = "postgres+redis" if args.postgres else "sqlite"
    slice_seconds = args.seconds / args.repeats
    refs: list[Tally] = []
    posts: list[Tally] = []
    fulls: list[Tally] = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bascule-bench-")))
        port = free_port()
        env = base_environment(tmp, port, args.rounds)
        database = ""
        if args.postgres:
            env["BASCULE_DATABASE_URL"] = stack.enter_context(postgres_database(args.pg_admin_url))
            env["BASCULE_REDIS_URL"] = stack.enter_context(redis_database(args.redis_url))
            database = env["BASCULE_DATABASE_URL"].rsplit("/", 1)[1]
        progress(f"initialising a {backend} instance in {tmp}")
        password = initialise(env, EMAIL)
        hashed = bcrypt.hashpw(b"x" * 44, bcrypt.gensalt(args.rounds))

        progress(f"starting gunicorn with {args.workers} workers on port {port}")
        master = stack.enter_context(gunicorn(env, port, args.workers, tmp / "gunicorn.log"))
        for _ in range(2 * args.workers):  # first requests open connections, compile templates
            if not sign_in(port, password, login_form(port)):
                raise SystemExit(f"a warm-up sign-in failed; see {tmp / 'gunicorn.log'}")

        for repeat in range(1, args.repeats + 1):
            progress(f"[{repeat}/{args.repeats}] bcrypt.checkpw alone, {slice_seconds:g}s")
            refs.append(bcrypt_slice(hashed, args.workers, slice_seconds))
            # Half as many again as the reference rate needs, so the POST loops never starve.
            needed = math.ceil(refs[-1].rate * slice_seconds * 1.5) + 4 * args.concurrency
            forms = [login_form(port) for _ in range(needed)]
            progress(f"[{repeat}/{args.repeats}] POST /login, {slice_seconds:g}s")
            servers = backends_of(database) if database else []
            posts.append(
                accounted(
                    master,
                    servers,
                    partial(post_slice, port, password, forms, args.concurrency, slice_seconds),
                )
            )
            if posts[-1].starved:
                progress("note: the prepared forms ran out; the rate covers the time they lasted")
            if not args.no_page_view:
                progress(f"[{repeat}/{args.repeats}] GET + POST /login, {slice_seconds:g}s")
                fulls.append(full_slice(port, password, args.concurrency, slice_seconds))

    reference = statistics.fmean(t.rate for t in refs)
    sign_ins = statistics.fmean(t.rate for t in posts)
    ratio = sign_ins / reference
    done = sum(t.done for t in posts)
    cpu_per_check = sum(t.cpu for t in refs) / sum(t.done for t in refs)
    cpu_per_sign_in = sum(t.cpu for t in posts) / max(1, done)
    other = statistics.fmean(t.other for t in refs + posts)
    ratio_quiet, quiet_repeats = ratio_over_quiet(refs, posts)
    return Report(
        backend=backend,
        rounds=args.rounds,
        workers=args.workers,
        concurrency=args.concurrency,
        seconds=args.seconds,
        repeats=args.repeats,
        other_load=rounded(other, 3),
        other_load_per_repeat=[
            (rounded(r.other, 3), rounded(p.other, 3)) for r, p in zip(refs, posts, strict=True)
        ],
        bcrypt_per_second=round(reference, 3),
        sign_ins_per_second=round(sign_ins, 3),
        sign_ins_with_page_view_per_second=(
            round(statistics.fmean(t.rate for t in fulls), 3) if fulls else None
        ),
        ratio=round(ratio, 4),
        ratio_per_repeat=[round(p.rate / r.rate, 3) for p, r in zip(posts, refs, strict=True)],
        quiet_repeats=quiet_repeats,
        ratio_quiet=rounded(ratio_quiet, 4),
        target=TARGET_RATIO,
        meets_target=ratio >= TARGET_RATIO,
        cpu_ms_per_checkpw=round(1000 * cpu_per_check, 2),
        worker_cpu_ms_per_sign_in=rounded(1000 * cpu_per_sign_in, 2),
        cpu_ratio=rounded(cpu_per_check / cpu_per_sign_in, 4),
        sign_ins=done,
        failed_sign_ins=sum(t.failed for t in posts + fulls),
    )


def _percent(share: float | None) -> str:
    return "?" if share is None else f"{share:.0%}"


def print_report(report: Report) -> None:
    r = report
    print(
        f"bcrypt.checkpw alone (cost {r.rounds}, {r.workers} processes): "
        f"{r.bcrypt_per_second:.2f}/s"
    )
    print(
        f"sign-ins through gunicorn ({r.workers} workers, {r.backend}, POST /login): "
        f"{r.sign_ins_per_second:.2f}/s"
    )
    if r.sign_ins_with_page_view_per_second is not None:
        print(
            "sign-ins with their page view (GET + POST /login): "
            f"{r.sign_ins_with_page_view_per_second:.2f}/s"
        )
    verdict = "ok" if r.meets_target else "BELOW TARGET"
    spread = ", ".join(f"{x:.3f}" for x in r.ratio_per_repeat)
    print(f"ratio: {r.ratio:.3f} (target >= {r.target}) {verdict}   [per repeat: {spread}]")
    if r.cpu_ratio is not None:
        servers = " (database servers not included)" if r.backend != "sqlite" else ""
        print(
            f"CPU per sign-in in the worker{servers}: {r.worker_cpu_ms_per_sign_in:.1f} ms; "
            f"per checkpw alone: {r.cpu_ms_per_checkpw:.1f} ms; ratio {r.cpu_ratio:.3f}"
        )
    if r.quiet_repeats < r.repeats:
        loads = ", ".join(f"{_percent(a)}/{_percent(b)}" for a, b in r.other_load_per_repeat)
        print(f"CPU share other processes took, per repeat (reference/sign-ins): {loads}")
        if r.ratio_quiet is None:
            print("warning: no repeat had the CPUs to itself; the rates are not comparable")
        else:
            print(
                f"ratio over the {r.quiet_repeats} quiet repeat(s) "
                f"(others <= {NOISY:.0%} on both sides): {r.ratio_quiet:.3f}"
            )
    if r.failed_sign_ins:
        print(f"failed sign-ins: {r.failed_sign_ins} (the figures are not trustworthy)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12, help="bcrypt cost (default 12)")
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="time for each kind of load (default 20)"
    )
    parser.add_argument(
        "--repeats", type=int, default=4, help="alternating slices the time is cut into"
    )
    parser.add_argument("--workers", type=int, default=cores, help="gunicorn workers (cores)")
    parser.add_argument("--concurrency", type=int, help="client loops (default: --workers)")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL + Redis backend")
    parser.add_argument(
        "--pg-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="where to create (and drop) the run's database",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--no-page-view", action="store_true", help="skip the GET + POST slices")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    args.concurrency = args.concurrency or args.workers
    if not 4 <= args.rounds <= 31:
        parser.error("--rounds is a bcrypt cost, 4 to 31")
    if args.seconds <= 0 or min(args.repeats, args.workers, args.concurrency) < 1:
        parser.error("--seconds, --repeats, --workers and --concurrency must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    report = until_done(lambda: run(args, progress))
    if report is None:
        return INTERRUPTED
    show(report, args.json, print_report)
    return 1 if report.failed_sign_ins else 0


if __name__ == "__main__":
    sys.exit(main())
