"""The gateway's throughput and latency with wrk, against nginx measured in the same run.

Four ways to reach one tiny, fast upstream, each loaded by wrk (Debian package ``wrk``) with
the same connections, the same request and the same (valid) gateway session cookie:

(a) upstream direct: nginx answering ``GET /hello`` itself with a 6-byte body (``return
    200``). It is the fastest HTTP server on the machine, so what is added on top of it is
    visible rather than hidden behind a slow upstream; it is the ceiling of the machine's
    loopback HTTP and the reference for every other figure;
(b) nginx proxy alone: an nginx server ``proxy_pass``-ing to (a) over kept-alive connections,
    no authentication: what any reverse proxy in front costs (and, informational, (b0): the
    same with nginx's default of a new upstream connection per request, which is slower);
(c) nginx + ``auth_request`` to Bascule: the configuration docs/gateway.md shows and
    tests/gateway/test_nginx.py runs (tests/gateway/nginx/*.conf, included as they are), each
    request asking the gateway's ``/_bascule/auth`` before nginx proxies it to (a);
(d) Bascule's own reverse proxy in front of (a).

Each is reported in requests per second and p50/p99 latency, and as a ratio to (a) and (b).
Then the issue's targets: (c) >= 0.25 and (d) >= 0.2 of (b)'s throughput, and p99 added over
nginx alone <= 5 ms at half the saturating load. wrk has no fixed-rate mode (wrk2 is not in
Debian), so the half-load runs pace wrk's connections with a Lua ``delay()`` between a
response and the next request, and the number of connections is calibrated until the rate
reached is the one wanted; nginx alone (b) is then run at that same rate, and the two p99s
are compared. This is a closed loop with think time, not wrk2's open loop: a stall delays the
requests behind it instead of counting against them, so a tail this mode hides can exist. The
rates reached are printed next to the figures.

The gateway runs as in production: gunicorn with the gateway's own worker
(``gateway.worker.GatewayWorker``: uvloop and gateway.server, ``gateway.app:create_app()``),
one worker per core, Redis as the shared store (``--redis-url``, a database of its own: one
holding ``bascule:*`` keys is refused, and the keys the run made are deleted). The IdP (one
sync gunicorn worker, SQLite) is needed only to sign in once, through the real code flow with
httpx, for the session cookie every request carries, and to fill the permission cache once.
The policy: one route, ``GET /hello`` needs ``messages.send``, which the owner has.

    python bench/gateway.py                    # 10 s per run, about two minutes in all
    python bench/gateway.py --seconds 5 --connections 32 --json
    python bench/gateway.py --profile DIR      # then py-spy on the gateway workers

``--profile DIR`` (needs ``pip install py-spy``) runs (c) and (d) once more with py-spy
sampling every gateway worker and writes flame graphs and collapsed stacks to DIR, with a
summary of where the sampled time goes; those runs' rates are slowed by the sampling and are
not reported.

Run by hand, not by pytest: it takes every core. Everything it started is stopped on the way
out, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from _harness import (
    INTERRUPTED,
    NOISY,
    ROOT,
    base_environment,
    children_of,
    cpu_of,
    free_port,
    gunicorn,
    initialise,
    machine_busy,
    processes_named,
    progress,
    redis_database,
    show,
    until_done,
)

NGINX = "/usr/sbin/nginx"
NGINX_SNIPPETS = ROOT / "tests" / "gateway" / "nginx"
COOKIE = "bascule_gateway"  # the development-mode name: everything is plain http on loopback
EMAIL = "owner@bench.test"
ORG = "bench"
PATH = "/hello"
BODY = "hello\n"
STARTUP_TIMEOUT = 30.0
PACE_DELAY_MS = 10  # think time between a response and a connection's next request
FORWARD_AUTH_TARGET = 0.25
REVERSE_PROXY_TARGET = 0.2
P99_ADDED_TARGET_MS = 5.0

MODES = {
    "a": "upstream direct (nginx return 200)",
    "b": "nginx proxy alone",
    "b0": "nginx alone, no upstream keep-alive",
    "c": "nginx + auth_request to Bascule",
    "d": "Bascule reverse proxy",
}

POLICY = """\
[upstream]
url = "http://127.0.0.1:{upstream}"
name = "bench"
org = "{org}"

[[route]]
path = "{path}"
methods = ["GET"]
permission = "messages.send"
"""

PACE_SCRIPT = """\
-- wrk: wait a fixed time between a response and this connection's next request.
local pause = 10
function init(args)
    pause = tonumber(args[1]) or pause
end
function delay()
    return pause
end
"""


# ---------------------------------------------------------------------------------------------
# nginx: the upstream (a), the plain proxy (b) and auth_request to the gateway (c)


@dataclass(frozen=True)
class Ports:
    upstream: int = field(default_factory=free_port)
    proxy: int = field(default_factory=free_port)
    proxy_closing: int = field(default_factory=free_port)
    auth: int = field(default_factory=free_port)
    gateway: int = field(default_factory=free_port)
    idp: int = field(default_factory=free_port)


def nginx_conf(prefix: Path, ports: Ports) -> str:
    user = ""
    if os.geteuid() == 0:  # workers would otherwise run as a user that cannot enter the prefix
        import pwd

        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n"
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/temp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}worker_processes auto;
error_log {prefix}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    keepalive_requests 1000000;
{temp}

    # (a) the upstream
    server {{
        listen 127.0.0.1:{ports.upstream} backlog=4096;
        location = {PATH} {{
            default_type text/plain;
            return 200 "{BODY.strip()}\\n";
        }}
    }}

    upstream bench_upstream {{
        server 127.0.0.1:{ports.upstream};
        keepalive 64;
    }}

    # (b) nginx proxy alone
    server {{
        listen 127.0.0.1:{ports.proxy} backlog=4096;
        location / {{
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}

    # (b0) the same with nginx's defaults: HTTP/1.0, a new upstream connection per request
    server {{
        listen 127.0.0.1:{ports.proxy_closing} backlog=4096;
        location / {{
            proxy_pass http://127.0.0.1:{ports.upstream};
        }}
    }}

    # (c) nginx + auth_request: the files docs/gateway.md shows and the test runs
    include {NGINX_SNIPPETS}/bascule-http.conf;
    upstream bascule_gateway {{
        server 127.0.0.1:{ports.gateway};
        keepalive 64;
    }}
    upstream bascule_app {{
        server 127.0.0.1:{ports.upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{ports.auth} backlog=4096;
        include {NGINX_SNIPPETS}/bascule-locations.conf;
    }}
}}
"""


@contextlib.contextmanager
def nginx(prefix: Path, ports: Ports) -> Iterator[int]:
    (prefix / "temp").mkdir(parents=True)
    (prefix / "nginx.conf").write_text(nginx_conf(prefix, ports))
    command = [
        NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
        "-e", str(prefix / "error.log"), "-g", f"daemon off; pid {prefix / 'nginx.pid'};",
    ]  # fmt: skip
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    if checked.returncode != 0:
        raise SystemExit(f"nginx refuses the configuration:\n{checked.stderr}")
    server = subprocess.Popen(command, start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        wait_for(server, f"http://127.0.0.1:{ports.upstream}{PATH}", prefix / "error.log")
        yield server.pid
    finally:
        stop(server)


# ---------------------------------------------------------------------------------------------
# The gateway under gunicorn, as deployed


@contextlib.contextmanager
def gateway(
    env: dict[str, str], port: int, workers: int, worker_class: str, log: Path
) -> Iterator[int]:
    """gunicorn with the gateway's workers; yields the master's pid."""
    command = [
        sys.executable, "-m", "gunicorn", "--workers", str(workers),
        "--worker-class", worker_class, "--bind", f"127.0.0.1:{port}",
        "--backlog", "4096", "--graceful-timeout", "5", "--no-control-socket",
        "gateway.app:create_app()",
    ]  # fmt: skip
    with log.open("wb") as out:
        server = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=out, stderr=out, start_new_session=True
        )
    try:
        wait_for(server, f"http://127.0.0.1:{port}/_bascule/readyz", log)
        yield server.pid
    finally:
        stop(server)


def wait_for(server: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server for {url} exited ({server.returncode}):\n{tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"{url} not answering after {STARTUP_TIMEOUT:.0f}s:\n{tail(log)}")


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=5)


def tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-3000:]
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------------------------
# Signing in once, through the real code flow


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_NEXT = re.compile(r'name="next" value="([^"]*)"')


def sign_in(gateway_url: str, idp_url: str, password: str) -> str:
    """The gateway session cookie of the owner, signed in as a browser would."""
    html = {"Accept": "text/html"}
    with httpx.Client(timeout=30, headers=html) as client:
        page = follow(client, client.get(gateway_url + PATH))
        csrf, after = _CSRF.search(page.text), _NEXT.search(page.text)
        if csrf is None or after is None:
            raise SystemExit(f"no sign-in form at {page.url}:\n{page.text[:500]}")
        form = {
            "email": EMAIL,
            "password": password,
            "csrf_token": csrf.group(1),
            "next": after.group(1).replace("&amp;", "&"),
        }
        landed = follow(client, client.post(idp_url + "/login", data=form))
        if landed.status_code != 200 or landed.text != BODY:
            raise SystemExit(
                f"sign-in did not reach the upstream: {landed.url} {landed.text[:300]}"
            )
        cookie = client.cookies.get(COOKIE)
    if not cookie:
        raise SystemExit("signed in, but the gateway set no session cookie")
    return str(cookie)


def follow(client: httpx.Client, response: httpx.Response) -> httpx.Response:
    for _ in range(10):
        if response.status_code not in (301, 302, 303, 307, 308):
            return response
        response = client.get(response.url.join(response.headers["location"]))
    raise SystemExit("too many redirects while signing in")


# ---------------------------------------------------------------------------------------------
# wrk


@dataclass
class Load:
    """One wrk run."""

    mode: str
    connections: int
    seconds: float
    requests: int
    rate: float  # requests per second
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx/3xx answers and socket errors
    paced_ms: int | None = None  # think time per connection (half-load runs)
    gateway_cpu_us: float | None = None  # gateway workers' CPU per request (c, d)
    worker_split: list[float] = field(default_factory=list)  # each worker's share of that CPU
    other_cpu: float = math.nan  # share of all cores that processes not in the bench took


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(output: str) -> tuple[int, float, float, float, int]:
    """Requests, rate, p50 and p99 in ms, errors, from ``wrk --latency``."""

    def latency(percent: int) -> float:
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
        if match is None:
            raise SystemExit(f"no {percent}% latency in wrk's output:\n{output}")
        return float(match.group(1)) * _UNITS[match.group(2)]

    requests = re.search(r"^\s+(\d+) requests in", output, re.MULTILINE)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if requests is None or rate is None:
        raise SystemExit(f"cannot read wrk's output:\n{output}")
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sockets:
        errors += sum(int(n) for n in sockets.groups())
    return int(requests.group(1)), float(rate.group(1)), latency(50), latency(99), errors


class Wrk:
    """Runs wrk, and accounts the CPU: the gateway workers' per request, and everyone else's.

    ``servers`` names the bench's own processes (nginx, gunicorn masters and workers, Redis);
    wrk is this process's child. What the machine spent beyond those is another process's
    work, which makes the figures of that run incomparable (NOISY when over 5%).
    """

    def __init__(
        self,
        threads: int,
        cookie: str,
        script_dir: Path,
        servers: Callable[[], list[int]],
        workers: Callable[[], list[int]],
    ) -> None:
        self.threads = threads
        self.cookie = cookie
        self.servers = servers
        self.workers = workers
        self.pace = script_dir / "pace.lua"
        self.pace.write_text(PACE_SCRIPT)

    def run(
        self,
        mode: str,
        url: str,
        connections: int,
        seconds: float,
        paced_ms: int | None = None,
    ) -> Load:
        threads = min(self.threads, connections)
        command = [
            "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s",
            "--latency", "--timeout", "10s", "-H", f"Cookie: {COOKIE}={self.cookie}",
        ]  # fmt: skip
        if paced_ms is not None:
            command += ["-s", str(self.pace)]
        command.append(url)
        if paced_ms is not None:
            command += ["--", str(paced_ms)]
        workers, servers = self.workers(), self.servers()
        worker_cpu = [cpu_of([pid]) for pid in workers]
        ours, children, busy = cpu_of(servers), _children_cpu(), machine_busy()
        started = time.monotonic()
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
        wall = time.monotonic() - started
        worker_cpu = [
            cpu_of([pid]) - before for pid, before in zip(workers, worker_cpu, strict=True)
        ]
        ours = cpu_of(servers) - ours + _children_cpu() - children
        other = max(0.0, machine_busy() - busy - ours) / (wall * (os.cpu_count() or 1))
        if done.returncode != 0:
            raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stderr}{done.stdout}")
        requests, rate, p50, p99, errors = parse_wrk(done.stdout)
        load = Load(mode, connections, seconds, requests, rate, p50, p99, errors, paced_ms)
        load.other_cpu = round(other, 3)
        spent = sum(worker_cpu)
        if mode in "cd" and requests and spent > 0:
            load.gateway_cpu_us = round(spent / requests * 1e6, 1)
            load.worker_split = [round(cpu / spent, 2) for cpu in worker_cpu]
        return load


def _children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def paced(wrk: Wrk, mode: str, url: str, rate: float, seconds: float) -> Load:
    """A run at about ``rate`` requests/s: connections calibrated for PACE_DELAY_MS pauses."""
    connections = max(1, round(rate * PACE_DELAY_MS / 1000))
    for _ in range(3):  # the response time adds to each connection's cycle: calibrate
        probe = wrk.run(mode, url, connections, min(3.0, seconds), PACE_DELAY_MS)
        if probe.rate <= 0:
            break
        wanted = max(1, round(connections * rate / probe.rate))
        if abs(wanted - connections) <= max(1, connections // 50):
            break
        connections = wanted
    return wrk.run(mode, url, connections, seconds, PACE_DELAY_MS)


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class Report:
    cores: int
    gateway_workers: int
    worker_class: str
    repeats: int
    connections: int
    seconds: float
    saturated: dict[str, Load]
    half_load: dict[str, dict[str, Load]]  # "c"/"d" -> {"b": nginx alone, "c"/"d": Bascule}
    ratios: dict[str, dict[str, float]]
    targets: list[dict[str, Any]]
    profile: dict[str, Any] | None = None


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> Report:
    ports = Ports()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bascule-bench-gw-")))
        env = base_environment(tmp, ports.idp, 4)
        env.update(
            BASCULE_LOG_LEVEL="WARNING",
            BASCULE_GATEWAY_URL=f"http://127.0.0.1:{ports.gateway}",
            BASCULE_REDIS_URL=stack.enter_context(redis_database(args.redis_url)),
            BASCULE_GATEWAY_POLICY=str(tmp / "policy.toml"),
            BASCULE_TRUSTED_PROXY_COUNT="1",
        )
        (tmp / "policy.toml").write_text(POLICY.format(upstream=ports.upstream, org=ORG, path=PATH))
        progress(f"initialising an instance in {tmp} (IdP on SQLite, store on {args.redis_url})")
        password = initialise(env, EMAIL)
        web = stack.enter_context(nginx(tmp / "nginx", ports))
        progress("starting the IdP (gunicorn, 1 sync worker)")
        idp = stack.enter_context(gunicorn(env, ports.idp, 1, tmp / "idp.log"))
        progress(f"starting the gateway (gunicorn, {args.workers} workers {args.worker_class})")
        master = stack.enter_context(
            gateway(env, ports.gateway, args.workers, args.worker_class, tmp / "gw.log")
        )
        cookie = sign_in(
            f"http://127.0.0.1:{ports.gateway}", f"http://127.0.0.1:{ports.idp}", password
        )
        urls = {
            "a": f"http://127.0.0.1:{ports.upstream}{PATH}",
            "b": f"http://127.0.0.1:{ports.proxy}{PATH}",
            "b0": f"http://127.0.0.1:{ports.proxy_closing}{PATH}",
            "c": f"http://127.0.0.1:{ports.auth}{PATH}",
            "d": f"http://127.0.0.1:{ports.gateway}{PATH}",
        }
        check_answers(urls, cookie)

        def workers() -> list[int]:
            return children_of(master)

        def servers() -> list[int]:
            masters = [web, idp, master]
            return masters + [c for m in masters for c in children_of(m)] + redis_servers

        redis_servers = processes_named("redis-server")
        wrk = Wrk(args.threads, cookie, tmp, servers, workers)
        runs: dict[str, list[Load]] = {mode: [] for mode in urls}
        for repeat in range(1, args.repeats + 1):
            for mode, url in urls.items():
                progress(f"({mode}) {MODES[mode]}: warm-up, then {args.seconds:g}s ({repeat})")
                wrk.run(mode, url, args.connections, args.warmup)
                runs[mode].append(wrk.run(mode, url, args.connections, args.seconds))
                progress(f"    {describe(runs[mode][-1])}")
        saturated = {mode: median_run(loads) for mode, loads in runs.items()}

        half: dict[str, dict[str, Load]] = {}
        for mode in "cd":
            rate = saturated[mode].rate / 2
            progress(f"half load of ({mode}): {rate:.0f} req/s on ({mode}) and on (b)")
            half[mode] = {
                "b": paced(wrk, "b", urls["b"], rate, args.seconds),
                mode: paced(wrk, mode, urls[mode], rate, args.seconds),
            }
            for load in half[mode].values():
                progress(f"    ({load.mode}) {describe(load)}")

        profile_summary = None
        if args.profile:
            profile_summary = profile(args, wrk, urls, workers, progress)
        errors = sum(load.errors for load in saturated.values()) + sum(
            load.errors for pair in half.values() for load in pair.values()
        )
        if errors:
            progress(f"WARNING: {errors} failed requests (non-2xx or socket errors)")
            progress(tail(tmp / "gw.log"))
    return assemble(args, saturated, half, profile_summary)


def median_run(loads: list[Load]) -> Load:
    """The run of median throughput (repeats interleave the modes, so a busy neighbour slows
    all of them alike); the others' CPU is the highest of the repeats."""
    ranked = sorted(loads, key=lambda load: load.rate)
    chosen = ranked[(len(ranked) - 1) // 2]
    return replace(chosen, other_cpu=max(load.other_cpu for load in loads))


def check_answers(urls: dict[str, str], cookie: str) -> None:
    """Every mode reaches the upstream with the cookie; without it, the Bascule modes refuse."""
    for mode, url in urls.items():
        answer = httpx.get(url, headers={"Cookie": f"{COOKIE}={cookie}"}, timeout=10)
        if answer.status_code != 200 or answer.text != BODY:
            raise SystemExit(f"({mode}) {url} answered {answer.status_code}: {answer.text[:200]}")
    for mode in "cd":
        if httpx.get(urls[mode], timeout=10).status_code != 401:
            raise SystemExit(f"({mode}) lets a request without a session through")


def assemble(
    args: argparse.Namespace,
    saturated: dict[str, Load],
    half: dict[str, dict[str, Load]],
    profile_summary: dict[str, Any] | None,
) -> Report:
    ratios = {
        mode: {
            "to_a": round(load.rate / saturated["a"].rate, 3),
            "to_b": round(load.rate / saturated["b"].rate, 3),
        }
        for mode, load in saturated.items()
    }
    targets: list[dict[str, Any]] = [
        {
            "what": "forward-auth (c) throughput / nginx alone (b)",
            "value": ratios["c"]["to_b"],
            "target": f">= {FORWARD_AUTH_TARGET}",
            "pass": ratios["c"]["to_b"] >= FORWARD_AUTH_TARGET,
        },
        {
            "what": "reverse proxy (d) throughput / nginx alone (b)",
            "value": ratios["d"]["to_b"],
            "target": f">= {REVERSE_PROXY_TARGET}",
            "pass": ratios["d"]["to_b"] >= REVERSE_PROXY_TARGET,
        },
    ]
    for mode in "cd":
        added = round(half[mode][mode].p99_ms - half[mode]["b"].p99_ms, 2)
        targets.append(
            {
                "what": f"p99 added by ({mode}) over nginx alone at half of ({mode})'s saturating"
                f" load ({half[mode][mode].rate:.0f} and {half[mode]['b'].rate:.0f} req/s"
                " reached, paced)",
                "value": added,
                "target": f"<= {P99_ADDED_TARGET_MS} ms",
                "pass": added <= P99_ADDED_TARGET_MS,
            }
        )
    return Report(
        cores=os.cpu_count() or 1,
        gateway_workers=args.workers,
        worker_class=args.worker_class,
        repeats=args.repeats,
        connections=args.connections,
        seconds=args.seconds,
        saturated=saturated,
        half_load=half,
        ratios=ratios,
        targets=targets,
        profile=profile_summary,
    )


def describe(load: Load) -> str:
    cpu = ""
    if load.gateway_cpu_us:
        split = "/".join(f"{share:.2f}" for share in load.worker_split)
        cpu = f", gateway CPU {load.gateway_cpu_us:.0f} us/req split {split}"
    pace = f", paced {load.paced_ms} ms" if load.paced_ms else ""
    noisy = " NOISY" if load.other_cpu > NOISY else ""
    return (
        f"{load.rate:9.0f} req/s  p50 {load.p50_ms:6.2f} ms  p99 {load.p99_ms:6.2f} ms"
        f"  ({load.connections} connections{pace}{cpu}, {load.errors} errors,"
        f" others {100 * load.other_cpu:.0f}% CPU{noisy})"
    )


def print_report(report: Report) -> None:
    print(
        f"\nGateway benchmark: {report.cores} cores, {report.gateway_workers} gateway workers"
        f" ({report.worker_class}), wrk {report.connections} connections, {report.seconds:g}s"
        f" per run, median of {report.repeats}\n"
    )
    header = f"{'':42} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'/(a)':>7} {'/(b)':>7}"
    print(header + "  others' CPU")
    for mode, load in report.saturated.items():
        ratio = report.ratios[mode]
        noisy = " NOISY" if load.other_cpu > NOISY else ""
        print(
            f"{'(' + mode + ')':5}{MODES[mode]:37} {load.rate:9.0f}"
            f" {load.p50_ms:8.2f} {load.p99_ms:8.2f} {ratio['to_a']:7.3f} {ratio['to_b']:7.3f}"
            f"  {100 * load.other_cpu:5.1f}%{noisy}"
        )
    for mode in "cd":
        load = report.saturated[mode]
        split = " / ".join(f"{share:.2f}" for share in load.worker_split)
        print(
            f"\n({mode}) gateway workers' CPU: {load.gateway_cpu_us} us per request,"
            f" split between workers {split}"
        )
    print("\nHalf load (paced wrk, same rate on both sides):")
    for mode, pair in report.half_load.items():
        for side, load in pair.items():
            print(f"  for ({mode}): ({side}) {describe(load)}")
    print("\nTargets:")
    for target in report.targets:
        verdict = "PASS" if target["pass"] else "BELOW"
        print(f"  {verdict:5}  {target['what']}: {target['value']} (target {target['target']})")
    if report.profile:
        print(f"\nProfile (py-spy, {report.profile['dir']}):")
        for mode, summary in report.profile["modes"].items():
            print(f"  ({mode}) {MODES[mode]}: {summary['samples']} samples")
            for name, share in summary["top"]:
                print(f"      {100 * share:5.1f}%  {name}")


# ---------------------------------------------------------------------------------------------
# --profile: py-spy on every gateway worker during (c) and (d)

# Inclusive share of the sampled time in frames matching these (a sample counts once per name).
OPERATIONS = {
    "Gateway.handle (all of the gateway's own code)": "Gateway.handle (gateway/app.py",
    "sessions.look_up (session, IdP session, permissions)": "look_up (gateway/sessions.py",
    "identity.headers (the signed assertion)": "headers (gateway/identity.py",
    "Signer.sign (joserfc + ECDSA P-256)": "Signer.sign (idp/common/signing.py",
    "json (session records, assertion claims)": "(json/",
    "policy decide": "Policy.decide (gateway/policy.py",
    "paths.normalise": "normalise (gateway/paths.py",
    "audit note + Prometheus metrics": "AuditTrail.note (gateway/decisions.py",
    "prometheus_client (all)": "(prometheus_client/",
    "proxy.forward (the upstream client, gateway.upstream)": "forward (gateway/proxy.py",
    "proxy.upstream_headers": "upstream_headers (gateway/proxy.py",
    "socket writes (send(): loopback delivery included)": "_SelectorSocketTransport.write (",
    "gateway.server (parsing, answering)": "(gateway/server.py",
    "store MGET pipeline (gateway.redis_pipe)": "(gateway/redis_pipe.py",
}


def profile(
    args: argparse.Namespace,
    wrk: Wrk,
    urls: dict[str, str],
    workers: Callable[[], list[int]],
    progress: Callable[[str], None],
) -> dict[str, Any]:
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    out = Path(args.profile).resolve()
    out.mkdir(parents=True, exist_ok=True)
    modes: dict[str, Any] = {}
    for mode in "cd":
        progress(f"profiling ({mode}) with py-spy for {args.seconds:g}s")
        spies = []
        for pid in workers():
            raw = out / f"{mode}-worker-{pid}.txt"
            command = [
                spy, "record", "--pid", str(pid), "--rate", "500", "--duration",
                str(math.ceil(args.seconds)), "--format", "raw", "--output", str(raw),
                "--nonblocking",
            ]  # fmt: skip
            spies.append(
                (
                    raw,
                    subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                )
            )
        try:
            time.sleep(1.0)  # py-spy attaches
            wrk.run(mode, urls[mode], args.connections, args.seconds)
            for _, spy_process in spies:
                spy_process.wait(timeout=args.seconds + 30)
        finally:
            for _, spy_process in spies:
                stop(spy_process)
        modes[mode] = summarise([raw for raw, _ in spies])
        (out / f"{mode}-summary.json").write_text(json.dumps(modes[mode], indent=2))
    return {"dir": str(out), "modes": modes}


def summarise(files: list[Path]) -> dict[str, Any]:
    """Share of samples per operation (inclusive) and per innermost frame (exclusive)."""
    total = 0
    inclusive: Counter[str] = Counter()
    exclusive: Counter[str] = Counter()
    for path in files:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack_text, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            count = int(count_text)
            total += count
            for name, needle in OPERATIONS.items():
                if needle in stack_text:
                    inclusive[name] += count
            innermost = stack_text.rsplit(";", 1)[-1]
            exclusive[re.sub(r":\d+\)$", ")", innermost)] += count
    share = {name: count / total for name, count in inclusive.items()} if total else {}
    handler = "Gateway.handle (all of the gateway's own code)"
    if total:
        share["outside Gateway.handle (server, event loop)"] = 1 - share.get(handler, 0)
    return {
        "samples": total,
        "top": sorted(share.items(), key=lambda item: -item[1]),
        "self": [(name, count / total) for name, count in exclusive.most_common(25)]
        if total
        else [],
    }


# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per wrk run (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="wrk warm-up per mode (2)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    parser.add_argument("--threads", type=int, default=cores, help="wrk threads (cores)")
    parser.add_argument("--workers", type=int, default=cores, help="gateway workers (cores)")
    parser.add_argument(
        "--repeats", type=int, default=1, help="saturating runs per mode, interleaved (1)"
    )
    parser.add_argument(
        "--worker-class",
        default="gateway.worker.GatewayWorker",  # as `bascule serve` runs it
        help="gunicorn worker class of the gateway (as `bascule serve` runs it)",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--profile", metavar="DIR", help="then profile (c) and (d) with py-spy")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or min(args.connections, args.threads, args.workers, args.repeats) < 1:
        parser.error("--seconds, --connections, --threads, --workers, --repeats must be positive")
    return args


def missing_tools() -> list[str]:
    missing = [] if shutil.which("wrk") else ["wrk"]
    return missing + ([] if Path(NGINX).exists() else ["nginx"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = missing_tools()
    if missing:
        print(
            f"SKIPPED: {' and '.join(missing)} not found (Debian packages:"
            f" apt-get install {' '.join(missing)})",
            file=sys.stderr,
        )
        return 0

    report = until_done(lambda: run(args, progress))
    if report is None:
        return INTERRUPTED
    show(report, args.json, print_report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
