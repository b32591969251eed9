"""TOTP verifications per second through the HTTP stack, against pyotp alone, in one run.

A verification over HTTP is the second step of a sign-in: ``POST /login/2fa`` with a right code
for a user whose password was accepted, answered with a 303 and a new session cookie. Around the
few microseconds of HMAC that pyotp spends, it unseals the seed (AES-GCM), claims the time step
in the database (the replay guard), writes the audit chain, checks and clears the throttle and
rotates the session in the store. This script prints both rates, their ratio, and what the
stack costs per verification.

    python bench/second_factor.py                       # SQLite, the embedded default
    python bench/second_factor.py --users 100 --rounds 3 --json
    python bench/second_factor.py --database-url postgresql+psycopg://… --redis-url redis://…

Each user's step can be used once (that is the point of the replay guard), so the IdP runs
in-process with an injected clock that the script moves on by 30 s between rounds; the server
is a real threaded HTTP server on loopback and the client speaks plain HTTP/1.1 to it. Password
steps (bcrypt at cost 4) are done before each timed round and not counted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import re
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlencode

import pyotp
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from idp.app import create_app  # noqa: E402
from idp.common.clock import FrozenClock  # noqa: E402
from idp.common.sealing import create_data_key  # noqa: E402
from idp.config import Settings  # noqa: E402

PASSWORD = "bench horse battery staple 42"
COOKIE = "bascule_session"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_SET_COOKIE = re.compile(COOKIE + r"=([^;]+)")


@dataclass(frozen=True)
class Report:
    backend: str
    users: int
    rounds: int
    pyotp_verifications_per_second: float
    http_verifications_per_second: float
    ratio: float
    http_ms_per_verification: float
    pyotp_us_per_verification: float
    failed: int


def pyotp_rate(secret: str, seconds: float) -> float:
    """``TOTP.verify`` with a one-step window, as many times as fit in ``seconds``."""
    totp = pyotp.TOTP(secret)
    now = time.time()
    code = totp.at(now)
    count, start = 0, time.perf_counter()
    while True:
        for _ in range(1000):
            if not totp.verify(code, for_time=now, valid_window=1):
                raise SystemExit("pyotp refused its own code")
        count += 1000
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


def request(
    port: int, method: str, path: str, body: str = "", cookie: str = ""
) -> tuple[int, str | None, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
        if body:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        data = response.read().decode("utf-8", "replace")
        match = _SET_COOKIE.search(response.getheader("Set-Cookie") or "")
        return response.status, match.group(1) if match else None, data
    finally:
        conn.close()


def password_step(port: int, email: str) -> tuple[str, str]:
    """Sign in with the password; returns the pending session's cookie and CSRF token."""
    status, cookie, page = request(port, "GET", "/login")
    match = _CSRF.search(page)
    if status != 200 or not cookie or not match:
        raise SystemExit("GET /login gave no session and CSRF token")
    body = urlencode({"csrf_token": match.group(1), "email": email, "password": PASSWORD})
    status, pending, _ = request(port, "POST", "/login", body, cookie)
    if status != 303 or not pending:
        raise SystemExit(f"the password step for {email} gave {status}")
    return pending, match.group(1)


def make_users(app, count: int) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """``count`` users with a confirmed authenticator app; returns (email, seed) pairs."""
    from idp.extensions import db
    from idp.services import orgs, totp, users

    rt = app.extensions["bascule"]
    org = orgs.create("bench", "Bench")
    role = orgs.get_role(org, "member")
    made = []
    for n in range(count):
        user = users.create_user(f"user{n}@bench.test")
        orgs.add_member(user, org, role)
        users.set_password(user, PASSWORD, rounds=4)
        enrolment = totp.begin(rt.keyring, user, None, rt.clock())
        code = totp.code_at(enrolment.secret, totp.step_at(rt.clock()))
        if not totp.confirm(rt.keyring, user, enrolment, code, rt.clock()):
            raise SystemExit("could not set up TOTP for a bench user")
        made.append((user.email, enrolment.secret))
    db.session.commit()
    return made


def run(args: argparse.Namespace) -> Report:
    with tempfile.TemporaryDirectory(prefix="bascule-bench-2fa-") as tmp:
        keys = Path(tmp) / "keys"
        create_data_key(keys)
        holder: dict[str, object] = {}
        server = make_server("127.0.0.1", 0, lambda e, s: holder["app"](e, s), threaded=True)  # type: ignore[operator]
        port = server.server_port
        settings = Settings(
            instance_dir=Path(tmp) / "instance",
            keys_dir=keys,
            bcrypt_rounds=4,
            issuer=f"http://127.0.0.1:{port}",
            database_url=args.database_url,
            redis_url=args.redis_url,
            log_level="WARNING",
        )
        (Path(tmp) / "instance").mkdir()
        clock = FrozenClock()
        app = create_app(settings, clock=clock, dev_warning=False)
        holder["app"] = app
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            with app.app_context():
                from idp.services import bootstrap

                bootstrap.upgrade_schema()
                accounts = make_users(app, args.users)
            http_rates, failed = [], 0
            for round_no in range(1, args.rounds + 1):
                clock.advance(30)  # a new time step: every user may verify once more
                pending = [password_step(port, email) for email, _ in accounts]
                print(f"[{round_no}/{args.rounds}] {len(pending)} POST /login/2fa", file=sys.stderr)
                start = time.perf_counter()
                for (cookie, csrf), (_, secret) in zip(pending, accounts, strict=True):
                    code = pyotp.TOTP(secret).at(clock())
                    body = urlencode({"csrf_token": csrf, "code": code})
                    status, new_cookie, _ = request(port, "POST", "/login/2fa", body, cookie)
                    failed += status != 303 or new_cookie in (None, cookie)
                http_rates.append(len(pending) / (time.perf_counter() - start))
            reference = pyotp_rate(accounts[0][1], args.reference_seconds)
        finally:
            server.shutdown()
            thread.join(5)
            with app.app_context():
                from idp.extensions import db

                db.engine.dispose()
    http_rate = statistics.fmean(http_rates)
    return Report(
        backend="postgres" if args.database_url else "sqlite",
        users=args.users,
        rounds=args.rounds,
        pyotp_verifications_per_second=round(reference, 1),
        http_verifications_per_second=round(http_rate, 1),
        ratio=round(http_rate / reference, 6),
        http_ms_per_verification=round(1000 / http_rate, 3),
        pyotp_us_per_verification=round(1e6 / reference, 3),
        failed=failed,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200, help="sign-ins per round (200)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (3)")
    parser.add_argument("--reference-seconds", type=float, default=3.0)
    parser.add_argument("--database-url", help="default: SQLite in a temporary folder")
    parser.add_argument("--redis-url", help="default: the SQL-backed store")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    if min(args.users, args.rounds) < 1:
        parser.error("--users and --rounds must be positive")
    report = run(args)
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        print(
            f"pyotp alone (TOTP.verify, window 1): {report.pyotp_verifications_per_second:,.0f}/s"
            f" ({report.pyotp_us_per_verification:.1f} µs each)"
        )
        print(
            f"through HTTP (POST /login/2fa, {report.backend}, one client): "
            f"{report.http_verifications_per_second:,.1f}/s "
            f"({report.http_ms_per_verification:.2f} ms each)"
        )
        print(f"ratio HTTP / pyotp: {report.ratio:.5f}")
        if report.failed:
            print(f"failed verifications: {report.failed} (the figures are not trustworthy)")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
