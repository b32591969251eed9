"""The permission matrix (issue 7, must-show 2): each built-in role, and nobody, against each
route of the demo app, through the real gateway in front of the real messaging app.

An allowed request must be answered by the app itself (its status, and its own
Content-Security-Policy, which the gateway's pages do not carry); a denied one by the gateway
(403, or 401 without a session), without reaching the app. The roles' permissions are the
DESIGN contract (idp/common/permissions.py); what each route needs is written here from
DESIGN's permission list and the app's pages, so a policy that drifted from either fails.
Each role signs in once per test. The whole matrix runs on SQLite; a subset runs on
PostgreSQL + Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from examples.messaging.app import create_app as create_messaging_app
from examples.messaging.assertion import Caller
from examples.messaging.csrf import CsrfGuard
from examples.messaging.store import Store
from gateway import policy as policy_module
from gateway.config import DEMO_POLICY
from idp.common.permissions import BUILTIN_ROLES
from tests.gateway.conftest import Stack
from tests.gateway.support import COOKIE, gateway_cookie

PUBLIC = "public"
SESSION = "session"  # any signed-in user
NO_ROUTE = "no route"  # the policy names no route: refused to everybody
APP_CSP = "default-src 'self'"  # how the app's answers start their CSP; the gateway's do not


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    needs: str  # PUBLIC, SESSION, NO_ROUTE or a permission name
    answer: int  # the app's status when the gateway lets the request through
    form: tuple[tuple[str, str], ...] = ()


ROUTES = [
    Row("GET", "/_static/messaging.css", PUBLIC, 200),
    Row("GET", "/healthz", PUBLIC, 200),
    Row("GET", "/", SESSION, 200),
    Row("GET", "/inbox", SESSION, 200),
    Row("HEAD", "/inbox", SESSION, 200),
    Row("GET", "/messages/1", SESSION, 200),
    Row("POST", "/messages", "messages.send", 303, (("body", "hello from the matrix"),)),
    Row("GET", "/messages/1/edit", "messages.edit", 200),
    Row("POST", "/messages/1/edit", "messages.edit", 303, (("body", "edited"),)),
    Row("GET", "/settings", "settings.manage", 200),
    Row(
        "POST",
        "/settings",
        "settings.manage",
        303,
        (("workspace_name", "Demo"), ("announcement", "")),
    ),
    Row("GET", "/billing", "billing.manage", 200),
    Row("POST", "/billing/plan", "billing.manage", 303, (("plan", "business"),)),
    Row("GET", "/members", "user_data.read", 200),
    Row("GET", "/members/export.json", "user_data.read", 200),
    Row("GET", "/messages", NO_ROUTE, 0),
    Row("POST", "/inbox", NO_ROUTE, 0),
    Row("DELETE", "/messages/1", NO_ROUTE, 0),
    Row("PUT", "/messages", NO_ROUTE, 0),
    Row("GET", "/admin", NO_ROUTE, 0),
]
SUBSET = {("GET", "/inbox"), ("POST", "/messages"), ("GET", "/settings"), ("GET", "/billing")}


def expected(role: str | None, row: Row) -> int:
    """The status ``role`` (None: no session) must get for ``row``."""
    if row.needs == NO_ROUTE:
        return 403
    if row.needs == PUBLIC:
        return row.answer
    if role is None:
        return 401
    if row.needs == SESSION or row.needs in BUILTIN_ROLES[role]:
        return row.answer
    return 403


def _csrf(stack_dir: Path, cookie: str) -> str:
    """The form token the app gives this session's pages (bound to the user and IdP session)."""
    _, sid, uid = cookie.split(".")
    caller = Caller(uid, "", "demo", frozenset(), sid, 0.0)
    secret = Store(stack_dir / "messaging.db").secret()
    return CsrfGuard(secret, "messaging").token(caller)


def _run(stack: Stack, data_dir: Path, role: str | None, rows: list[Row]) -> list[str]:
    """Send every row as ``role``; name each answer that differs from the matrix."""
    Store(data_dir / "messaging.db").send("demo", "seed", "seed@demo.test", "the first message")
    cookie = gateway_cookie(stack, f"{role}@demo.test", role) if role else None
    cookies = {COOKIE: cookie} if cookie else {}
    token = _csrf(data_dir, cookie) if cookie else ""
    wrong = []
    with httpx.Client(base_url=stack.gateway_url, cookies=cookies, timeout=30) as client:
        for row in rows:
            form = {**dict(row.form), "csrf_token": token} if row.method == "POST" else None
            answer = client.request(row.method, row.path, data=form)
            want = expected(role, row)
            from_app = answer.headers.get("Content-Security-Policy", "").startswith(APP_CSP)
            if answer.status_code != want or from_app != (want == row.answer):
                who = "app" if from_app else "gateway"
                wrong.append(f"{row.method} {row.path}: {answer.status_code} from the {who}")
    return wrong


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("role", [*BUILTIN_ROLES, None], ids=[*BUILTIN_ROLES, "anonymous"])
def test_role_matrix(stack: Stack, tmp_path: Path, role: str | None) -> None:
    assert _run(stack, tmp_path, role, ROUTES) == []


@pytest.mark.parametrize("backend", ["postgres+redis"], indirect=True)
def test_role_matrix_subset_on_postgres_and_redis(stack: Stack, tmp_path: Path) -> None:
    rows = [row for row in ROUTES if (row.method, row.path) in SUBSET]
    assert _run(stack, tmp_path, "member", rows) == []
    assert _run(stack, tmp_path, "owner", rows) == []


def test_matrix_covers_every_page_and_every_policy_route(tmp_path: Path) -> None:
    """A page added to the app, or a route to the policy, must be added here too."""
    app = create_messaging_app("http://idp.test", "http://gateway.test", data_path=tmp_path / "m")
    covered = {(row.method, row.path) for row in ROUTES}
    for rule in app.url_map.iter_rules():
        path = rule.rule.replace("<int:message_id>", "1").replace("<path:filename>", "x.css")
        if path.startswith("/_static/"):
            path = "/_static/messaging.css"
        for method in (rule.methods or set()) - {"OPTIONS", "HEAD"}:  # HEAD runs GET
            assert (method, path) in covered, f"{method} {rule.rule} is not in the matrix"
    policy = policy_module.load(DEMO_POLICY)
    used = {policy.match(row.method, row.path) for row in ROUTES}
    assert {route.index for route in policy.routes} <= {r.index for r in used if r}, (
        "a policy route is never exercised by the matrix"
    )
