"""What the gunicorn benchmarks share: a throwaway instance, its server, CPU accounting.

Used by ``login.py``, ``oidc.py`` and ``gateway.py``; not a benchmark itself. Everything here
cleans up after itself however the run ends (context managers), so a Ctrl-C or SIGTERM turned
into KeyboardInterrupt leaves no server, database or Redis keys behind.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import multiprocessing
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, is_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
COOKIE = "bascule_session"  # the development-mode name; the issuer is plain http on loopback
HTTP_TIMEOUT = 60.0
STARTUP_TIMEOUT = 30.0
NOISY = 0.05  # other processes' share of the CPUs above which the rates are not comparable
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_SET_COOKIE = re.compile(COOKIE + r"=([^;]+)")


# ---------------------------------------------------------------------------------------------
# The instance, its database and its server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_environment(tmp: Path, port: int, rounds: int) -> dict[str, str]:
    """The process environment without the caller's BASCULE_* settings, plus the bench's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASCULE_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        BASCULE_INSTANCE_DIR=str(tmp / "instance"),
        BASCULE_KEYS_DIR=str(tmp / "keys"),
        BASCULE_BCRYPT_ROUNDS=str(rounds),
        BASCULE_ISSUER=f"http://127.0.0.1:{port}",
    )
    return env


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for this run only; dropped afterwards."""
    import psycopg

    name = f"bascule_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def redis_database(url: str) -> Iterator[str]:
    """A Redis database with no Bascule keys in it; the keys the run made are deleted after.

    The IdP's Redis namespace is fixed, so the bench refuses a database another instance
    uses rather than mixing its sessions and counters with theirs.
    """
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    if next(client.scan_iter(match="bascule:*", count=1000), None) is not None:
        raise SystemExit(f"{url} already holds bascule:* keys; choose another --redis-url")
    try:
        yield url
    finally:
        keys = list(client.scan_iter(match="bascule:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def initialise(env: dict[str, str], email: str) -> str:
    """Keys, schema and an owner through ``bascule init``; returns the owner's password."""
    script = Path(sys.executable).with_name("bascule")  # the console script of this install
    command = [str(script), "init", "--admin-email", email, "--org", "bench", "--json"]
    done = subprocess.run(
        command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"bascule init failed:\n{done.stderr or done.stdout}")
    owner = json.loads(done.stdout)["owner"]
    if not owner or not owner.get("password"):
        raise SystemExit(f"bascule init created no owner:\n{done.stdout}")
    return str(owner["password"])


@contextlib.contextmanager
def gunicorn(
    env: dict[str, str], port: int, workers: int, log: Path, extra: list[str] | None = None
) -> Iterator[int]:
    """The IdP under gunicorn (sync workers, as deployed); yields the master's pid.

    Stopped however the run ends.
    """
    command = [sys.executable, "-m", "gunicorn", "--workers", str(workers), *(extra or [])]
    command += ["--bind", f"127.0.0.1:{port}", "idp.app:create_app()"]
    with log.open("wb") as out:
        server = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=out)
    try:
        _wait_healthy(server, port, log)
        yield server.pid
    finally:
        if server.poll() is None:
            server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


def _wait_healthy(server: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited ({server.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if request(port, "GET", "/healthz").status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(
        f"gunicorn not healthy after {STARTUP_TIMEOUT:.0f}s:\n{log.read_text()[-3000:]}"
    )


# ---------------------------------------------------------------------------------------------
# CPU accounting (Linux /proc)


def children_of(pid: int) -> list[int]:
    """The child processes of ``pid`` (gunicorn's workers); Linux /proc."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def backends_of(database: str) -> list[int]:
    """The PostgreSQL server processes serving ``database`` (their title names it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if title.startswith("postgres:") and f" {database} " in title:
                    found.append(int(entry.name))
    return found


def processes_named(name: str) -> list[int]:
    """The processes whose command name (``/proc/<pid>/comm``) is ``name``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
    return found


def cpu_of(pids: list[int]) -> float:
    """CPU seconds the processes have used so far; NaN when /proc cannot tell."""
    if not pids:
        return math.nan
    return sum(user_and_kernel_cpu_of(pids))


def user_and_kernel_cpu_of(pids: list[int]) -> tuple[float, float]:
    """(user, kernel) CPU seconds the processes have used so far: the kernel's share is what
    their system calls cost (sockets above all). Processes that have gone count as zero."""
    user = system = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            # Fields after the parenthesised command name; utime and stime are 14th and 15th.
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            user, system = user + int(fields[11]), system + int(fields[12])
    return user / CLOCK_TICKS, system / CLOCK_TICKS


def machine_busy() -> float:
    """CPU seconds all processes have used since boot (/proc/stat); NaN off Linux."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    except (OSError, ValueError):
        return math.nan
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / CLOCK_TICKS


# ---------------------------------------------------------------------------------------------
# The reference side: the same loop in one process per gunicorn worker, all at once


Run = tuple[int, float, float]  # one process's count, wall seconds and CPU seconds


def in_processes(
    loop: Callable[..., None], args: tuple[Any, ...], processes: int, seconds: float
) -> tuple[list[Run], float]:
    """Run ``loop(*args, seconds, barrier, results)`` in ``processes`` spawned processes at once.

    Each loop waits on the barrier, works for ``seconds`` and puts one ``Run`` on ``results``.
    Returns the runs and the share of all CPUs that other processes took meanwhile: the
    reference needs whole cores, so a busy neighbour makes both sides of a comparison noisy.
    ``loop`` must be a module-level function (spawn pickles it by name).
    """
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(processes + 1), ctx.Queue()
    children = [
        ctx.Process(target=loop, args=(*args, seconds, barrier, results)) for _ in range(processes)
    ]
    for child in children:
        child.start()
    try:
        barrier.wait(timeout=60)
        busy_before, started = machine_busy(), time.monotonic()
        runs: list[Run] = [results.get(timeout=seconds + 60) for _ in children]
        busy, wall = machine_busy() - busy_before, time.monotonic() - started
    finally:
        for child in children:
            child.join(timeout=1)
            if child.is_alive():
                child.terminate()
                child.join(timeout=5)
    cpu = sum(r[2] for r in runs)
    return runs, max(0.0, busy - cpu) / (wall * (os.cpu_count() or 1))


# ---------------------------------------------------------------------------------------------
# Timed loads


@dataclass(frozen=True)
class Tally:
    """What one timed slice achieved."""

    done: int
    failed: int
    rate: float  # per second: the sum over loops of done / that loop's own elapsed time
    cpu: float = 0.0  # CPU seconds the measured processes used during the slice
    other: float = math.nan  # share of all CPUs that other processes used meanwhile
    starved: bool = False  # a loop ran out of prepared sign-in forms before the deadline


def accounted(master: int, servers: list[int], load: Callable[[], Tally]) -> Tally:
    """``load``'s tally with the CPU gunicorn's workers used, and the share others took.

    Ours is gunicorn, this process (the client) and ``servers`` (the run's PostgreSQL
    backends); everything else busy on the machine meanwhile is someone else's.
    """
    workers = children_of(master)
    ours = [master, *workers, *servers]
    before = (cpu_of(workers), cpu_of(ours) + time.process_time(), machine_busy())
    started = time.monotonic()
    tally = load()
    wall = time.monotonic() - started
    mine = cpu_of(ours) + time.process_time() - before[1]
    other = max(0.0, machine_busy() - before[2] - mine) / (wall * (os.cpu_count() or 1))
    return replace(tally, cpu=cpu_of(workers) - before[0], other=other)


def rounded(value: float, digits: int) -> float | None:
    """None for what could not be measured (no /proc): JSON has no NaN."""
    return None if math.isnan(value) else round(value, digits)


def ratio_over_quiet(refs: list[Tally], loads: list[Tally]) -> tuple[float, int]:
    """loads' rate over refs' rate counting only the repeats where neither slice shared the
    CPUs with anyone else (NaN when none did), and how many repeats that was."""
    quiet = [i for i, (r, p) in enumerate(zip(refs, loads, strict=True)) if quiet_slices(r, p)]
    if not quiet:
        return math.nan, 0
    ratio = statistics.fmean(loads[i].rate for i in quiet) / statistics.fmean(
        refs[i].rate for i in quiet
    )
    return ratio, len(quiet)


def quiet_slices(*slices: Tally) -> bool:
    return not any(t.other > NOISY for t in slices)  # NaN (unknown) counts as quiet


def timed_loops(concurrency: int, seconds: float, step: Callable[[], bool | None]) -> Tally:
    """Run ``step`` in ``concurrency`` threads until the time is up (None: nothing left to do).

    Each loop's rate is its successes over the time to its last completed step, so the step
    in flight at the deadline is neither lost nor counted twice.
    """
    barrier = threading.Barrier(concurrency + 1)
    runs: list[tuple[int, int, float, bool]] = []
    lock = threading.Lock()

    def loop() -> None:
        barrier.wait()
        start = time.monotonic()
        deadline = start + seconds
        done = failed = 0
        last, starved = start, False
        while last < deadline:
            try:
                outcome = step()
            except (OSError, http.client.HTTPException, SystemExit) as exc:
                print(f"client error, loop stopped: {exc}", file=sys.stderr)
                failed += 1
                break
            if outcome is None:
                starved = True
                break
            done, failed = done + outcome, failed + (not outcome)
            last = time.monotonic()
        with lock:
            runs.append((done, failed, last - start, starved))

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=10)
    give_up = time.monotonic() + seconds + 2 * HTTP_TIMEOUT
    for thread in threads:
        while thread.is_alive() and time.monotonic() < give_up:
            thread.join(timeout=0.5)
    if len(runs) != concurrency:
        raise SystemExit("a client loop did not finish in time")
    return Tally(
        done=sum(r[0] for r in runs),
        failed=sum(r[1] for r in runs),
        rate=sum(r[0] / r[2] for r in runs if r[2] > 0),
        starved=any(r[3] for r in runs),
    )


# ---------------------------------------------------------------------------------------------
# The client: http.client, one connection per request (gunicorn's sync workers close each one)


@dataclass(frozen=True)
class Answer:
    status: int
    cookie: str | None  # the session cookie the response sets, if any
    location: str | None
    body: bytes


def request(
    port: int,
    method: str,
    path: str,
    body: str = "",
    cookie: str = "",
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request on a new connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:
        sent = dict(headers or {})
        if cookie:
            sent["Cookie"] = f"{COOKIE}={cookie}"
        if body:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body or None, headers=sent)
        response = conn.getresponse()
        data = response.read()
        match = _SET_COOKIE.search(response.getheader("Set-Cookie") or "")
        return Answer(
            response.status, match.group(1) if match else None, response.getheader("Location"), data
        )
    finally:
        conn.close()


INTERRUPTED = 130  # the exit status of a bench stopped by a signal or Ctrl-C


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def until_done(work: Callable[[], T]) -> T | None:
    """Run a bench; SIGTERM, SIGHUP and Ctrl-C stop it with every cleanup done (then None)."""

    def stop(*_: object) -> None:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # one interruption; the cleanup must finish
        raise KeyboardInterrupt  # so that every cleanup in the bench happens on a signal too

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    try:
        return work()
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        return None


def show(report: Any, as_json: bool, print_text: Callable[[Any], None]) -> None:
    """A bench's report for scripts (--json) or for people."""
    if as_json:
        print(json.dumps(asdict(report) if is_dataclass(report) else report, indent=2))
    else:
        print_text(report)
