"""The gateway policy: validation with the line named, and the pure decision."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from gateway.paths import normalise
from gateway.policy import (
    Decision,
    Identity,
    Outcome,
    Policy,
    PolicyError,
    compile_glob,
    load,
    parse,
)
from idp.common.permissions import BUILTIN_ROLES

DEMO = Path(__file__).resolve().parents[3] / "gateway" / "demo_policy.toml"
NOW = 1_000_000.0
UPSTREAM = """\
[upstream]
url = "http://127.0.0.1:8090"
name = "messaging"
org = "demo"
"""


def policy(routes: str) -> Policy:
    return parse(UPSTREAM + routes, "policy.toml")


def who(*permissions: str, amr: tuple[str, ...] = ("pwd",), age: float = 0) -> Identity:
    return Identity(frozenset(permissions), amr, NOW - age)


def decide(
    p: Policy, method: str, target: str, identity: Identity | None, ip: str = "192.0.2.1"
) -> Decision:
    return p.decide(method, normalise(target).path, ip, identity, NOW)


# --- loading ---------------------------------------------------------------------------------


def test_demo_policy_loads() -> None:
    demo = load(DEMO)
    assert (demo.upstream.url, demo.upstream.name, demo.upstream.org) == (
        "http://127.0.0.1:8090",
        "messaging",
        "demo",
    )
    assert [r.line for r in demo.routes] == [
        n for n, line in enumerate(DEMO.read_text().splitlines(), 1) if line == "[[route]]"
    ]


@pytest.mark.parametrize(
    ("routes", "line", "words"),
    [
        (
            '[[route]]\npath = "/a"\npublic = true\npermission = "messages.send"\n',
            5,
            "found public",
        ),
        ('[[route]]\npath = "/a"\n', 5, "exactly one"),
        ('[[route]]\npath = "/a"\npublic = true\n\n[[route]]\npath = "/b"\n', 9, "route 2"),
        ('[[route]]\npath = "/a"\nauthenticated = true\npermision = "x"\n', 8, "'permision'"),
        ('[[route]]\npath = "/a"\npermission = "billing.admin"\n', 7, "'billing.admin'"),
        ('[[route]]\npath = "/a"\npermissions = ["messages.send", "nope"]\n', 7, "'nope'"),
        ('[[route]]\npath = "/a"\npermissions = []\n', 7, "non-empty"),
        ('[[route]]\npath = "/a"\npublic = false\n', 7, "must be true"),
        ('[[route]]\npath = "a"\npublic = true\n', 6, "start with '/'"),
        ('[[route]]\npath = "/a/**b"\npublic = true\n', 6, "bad segment"),
        ('[[route]]\npath = "/a/../b"\npublic = true\n', 6, "bad segment"),
        ('[[route]]\npath = "/a;b"\npublic = true\n', 6, "bad segment"),
        ('[[route]]\npath = "/_bascule/auth"\npublic = true\n', 6, "belongs to the gateway"),
        ('[[route]]\npath = "/a"\nmethods = ["GET", "FETCH"]\npublic = true\n', 7, "'FETCH'"),
        ('[[route]]\npath = "/a"\npublic = true\nmfa = true\n', 8, "public route"),
        ('[[route]]\npath = "/a"\nauthenticated = true\nmfa = "yes"\n', 8, "true or false"),
        ('[[route]]\npath = "/a"\nauthenticated = true\nfactors = ["sms"]\n', 8, "'sms'"),
        ('[[route]]\npath = "/a"\nauthenticated = true\nfactors = ["recovery"]\n', 8, "'otp'"),
        ('[[route]]\npath = "/a"\nauthenticated = true\nmax_auth_age = "5d"\n', 8, "duration"),
        ('[[route]]\npath = "/a"\nauthenticated = true\nmax_auth_age = 300\n', 8, "duration"),
        ('[[route]]\npath = "/a"\nauthenticated = true\nallow_cidrs = ["10.0.0.1/8"]\n', 8, "host"),
        ('[[route]]\npath = "/a"\nauthenticated = true\nallow_cidrs = ["lan"]\n', 8, "'lan'"),
        ("", None, "no [[route]]"),
    ],
)
def test_errors_name_the_file_and_line(routes: str, line: int | None, words: str) -> None:
    with pytest.raises(PolicyError) as caught:
        policy(routes)
    message = str(caught.value)
    where = "policy.toml" if line is None else f"policy.toml line {line}:"
    assert message.startswith(where), message
    assert words in message


@pytest.mark.parametrize(
    ("upstream", "words"),
    [
        ('[upstream]\nurl = "ftp://x"\nname = "m"\norg = "demo"\n', "line 2: upstream url"),
        ('[upstream]\nurl = "http://x"\norg = "demo"\n', "line 1: upstream name"),
        ('[upstream]\nurl = "http://x"\nname = "m"\norg = "demo"\nport = 1\n', "line 5: unknown"),
        ("", "[upstream] with url"),
    ],
)
def test_upstream_is_validated(upstream: str, words: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse(upstream + '[[route]]\npath = "/"\npublic = true\n', "policy.toml")
    assert words in str(caught.value)


def test_unknown_top_level_keys_are_errors() -> None:
    with pytest.raises(PolicyError, match=r"^policy\.toml line 2: unknown key 'routes'"):
        parse("# policy\nroutes = []\n" + UPSTREAM, "policy.toml")


def test_syntax_errors_and_missing_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"^policy\.toml: .*line 5"):
        policy("[[route]\n")
    with pytest.raises(PolicyError, match="cannot read"):
        load(tmp_path / "absent.toml")


def test_inline_routes_still_load_without_lines() -> None:
    p = parse('route = [{ path = "/a", public = true }]\n' + UPSTREAM, "policy.toml")
    assert p.routes[0].line is None
    with pytest.raises(PolicyError, match=r"^policy\.toml: route 1: needs exactly one"):
        parse('route = [{ path = "/a" }]\n' + UPSTREAM, "policy.toml")


# --- globs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glob", "path", "hit"),
    [
        ("/billing/**", "/billing", True),
        ("/billing/**", "/billing/", True),
        ("/billing/**", "/billing/a/b/", True),
        ("/billing/**", "/billingx", False),
        ("/billing/**", "/BILLING/Invoices", True),
        ("/billing", "/billing/", True),
        ("/billing/", "/billing", True),
        ("/billing", "/billing/x", False),
        ("/messages/*/edit", "/messages/42/edit", True),
        ("/messages/*/edit", "/messages/edit", False),
        ("/messages/*/edit", "/messages/a/b/edit", False),
        ("/a/**/z", "/a/z", True),
        ("/a/**/z", "/a/b/c/z", True),
        ("/**/*.css", "/x/y/site.css", True),
        ("/**/*.css", "/x/y/site.cssx", False),
        ("/**", "/", True),
        ("/", "/", True),
        ("/", "/a", False),
        ("/a.b", "/aXb", False),
    ],
)
def test_globs(glob: str, path: str, hit: bool) -> None:
    assert (compile_glob(glob).fullmatch(path) is not None) is hit


# --- decisions -------------------------------------------------------------------------------

ROUTES = """
[[route]]
path = "/_static/**"
public = true

[[route]]
path = "/ops/**"
authenticated = true
allow_cidrs = ["10.0.0.0/8", "2001:db8::/32"]

[[route]]
path = "/inbox"
methods = ["get"]
authenticated = true

[[route]]
path = "/inbox"
methods = ["POST"]
permissions = ["messages.send", "messages.edit"]

[[route]]
path = "/billing/**"
permission = "billing.manage"
mfa = true
factors = ["webauthn"]
max_auth_age = "5m"
"""


def test_first_match_wins_and_no_match_denies() -> None:
    p = policy(ROUTES + '[[route]]\npath = "/inbox"\npublic = true\n')
    assert decide(p, "GET", "/inbox", None).outcome is Outcome.LOGIN
    assert decide(p, "GET", "/inbox", None).index == 2
    assert decide(p, "GET", "/inbox", None).line == 15
    nothing = decide(p, "GET", "/elsewhere", who(*BUILTIN_ROLES["owner"]))
    assert (nothing.outcome, nothing.route) == (Outcome.DENY, None)


def test_methods_select_the_route() -> None:
    p = policy(ROUTES)
    sender = who("messages.send")
    assert decide(p, "GET", "/inbox", sender).outcome is Outcome.ALLOW
    assert decide(p, "head", "/inbox", sender).outcome is Outcome.ALLOW  # HEAD follows GET
    refused = decide(p, "POST", "/inbox", sender)
    assert (refused.outcome, refused.reason) == (Outcome.DENY, "missing messages.edit")
    assert decide(p, "POST", "/inbox", who("messages.send", "messages.edit")).outcome == "allow"
    assert decide(p, "DELETE", "/inbox", sender).route is None


def test_public_needs_no_session() -> None:
    assert decide(policy(ROUTES), "GET", "/_static/app.css", None).outcome is Outcome.ALLOW


@pytest.mark.parametrize(
    ("identity", "outcome", "reason"),
    [
        (None, Outcome.LOGIN, "no session"),
        (who(amr=("hwk", "mfa")), Outcome.DENY, "missing billing.manage"),
        (who("billing.manage"), Outcome.STEP_UP, "needs a second factor"),
        (who("billing.manage", amr=("pwd", "otp", "mfa")), Outcome.STEP_UP, "needs webauthn"),
        (
            who("billing.manage", amr=("hwk", "mfa"), age=301),
            Outcome.STEP_UP,
            "needs sign-in within 300s",
        ),
        (who("billing.manage", amr=("pwd", "hwk", "mfa"), age=300), Outcome.ALLOW, "permitted"),
        (who("billing.manage", amr=("swk", "mfa")), Outcome.ALLOW, "permitted"),
    ],
)
def test_step_up(identity: Identity | None, outcome: Outcome, reason: str) -> None:
    decision = decide(policy(ROUTES), "POST", "/billing/card", identity)
    assert (decision.outcome, decision.reason) == (outcome, reason)
    assert decision.line == 25


@pytest.mark.parametrize(
    ("ip", "outcome"),
    [
        ("10.1.2.3", Outcome.ALLOW),
        ("::ffff:10.1.2.3", Outcome.ALLOW),  # IPv4 client on a dual-stack listener
        ("2001:db8::5", Outcome.ALLOW),
        ("192.0.2.1", Outcome.DENY),
        ("2001:db9::5", Outcome.DENY),
        ("not an address", Outcome.DENY),
        (None, Outcome.DENY),
    ],
)
def test_allow_cidrs(ip: str | None, outcome: Outcome) -> None:
    p = policy(ROUTES)
    assert p.decide("GET", "/ops/queue", ip, who(), NOW).outcome is outcome


def test_allow_cidrs_apply_before_the_session_and_to_public_routes() -> None:
    p = policy('[[route]]\npath = "/**"\npublic = true\nallow_cidrs = ["127.0.0.0/8"]\n')
    assert p.decide("GET", "/x", ipaddress.ip_address("127.0.0.1"), None, NOW).outcome == "allow"
    assert p.decide("GET", "/x", "192.0.2.1", None, NOW).outcome == "deny"


# --- bypass attempts against the demo policy -------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/billing",
        "/billing/",
        "/BILLING",
        "/Billing/invoices",
        "//billing",
        "/%62illing",
        "/_static/../billing",
        "/_static/%2e%2e/billing",
        "/inbox/../billing/",
    ],
)
def test_variants_of_billing_meet_the_billing_route(target: str) -> None:
    decision = decide(load(DEMO), "GET", target, who(*BUILTIN_ROLES["member"]))
    assert decision.outcome is Outcome.DENY
    assert decision.route is not None and decision.route.path == "/billing/**"


@pytest.mark.parametrize(
    ("role", "method", "target", "outcome"),
    [
        ("viewer", "GET", "/inbox", Outcome.ALLOW),
        ("viewer", "POST", "/messages", Outcome.DENY),
        ("member", "POST", "/messages", Outcome.ALLOW),
        ("member", "POST", "/messages/7/edit", Outcome.ALLOW),
        ("member", "GET", "/messages/7", Outcome.ALLOW),
        ("member", "GET", "/settings", Outcome.DENY),
        ("member", "GET", "/members/export", Outcome.DENY),
        ("admin", "POST", "/settings/name", Outcome.ALLOW),
        ("admin", "GET", "/members", Outcome.ALLOW),
        ("admin", "GET", "/billing", Outcome.DENY),
        ("owner", "GET", "/billing", Outcome.ALLOW),
        ("owner", "DELETE", "/inbox", Outcome.DENY),
    ],
)
def test_demo_roles(role: str, method: str, target: str, outcome: Outcome) -> None:
    assert decide(load(DEMO), method, target, who(*BUILTIN_ROLES[role])).outcome is outcome


def test_demo_billing_needs_a_recent_sign_in() -> None:
    owner = who(*BUILTIN_ROLES["owner"], age=16 * 60)
    assert decide(load(DEMO), "GET", "/billing", owner).outcome is Outcome.STEP_UP
    assert decide(load(DEMO), "GET", "/_static/app.js", None).outcome is Outcome.ALLOW
