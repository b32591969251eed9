"""Bad input anywhere (malformed form, huge field, invalid UTF-8, wrong content type) gives a 4xx
with a clear message, never a 500, and leaves nothing damaged.

httpx would normalise most of these requests (encode the path, fix the length, refuse bytes in
headers), so the requests are written byte for byte to a socket. Each read has a timeout: a
server that waited forever would fail the test instead of hanging it. Requests that must get
past the CSRF check carry a real session cookie and token, taken from a normal client first.
"""

from __future__ import annotations

import email
import email.policy
import html
import json
import re
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import quote_from_bytes, urlsplit

import httpx
import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from idp.extensions import db
from idp.models import AuditEvent
from idp.services import audit
from tests.support import (
    OTHER_STRONG_PASSWORD,
    STRONG_PASSWORD,
    csrf_token,
    invite,
    make_user,
    session_cookie,
    sign_in,
)

JANE = "jane@acme.test"
FORM = "application/x-www-form-urlencoded"
TIMEOUT = 5.0
GENERIC_FAILURE = "The email or password is not right."
FORM_EXPIRED = "This form has expired or did not come from this site."
NOT_UNDERSTOOD = "The request could not be understood."
TOO_LARGE = "The request is too large."
LINK_GONE = "This link has expired or was already used."
MULTIPART = "multipart/form-data; boundary=XyZ"
LINK = re.compile(r"https?://[^/\s]+(/(?:password/reset|invite)/[A-Za-z0-9_-]+)")


# --- raw HTTP --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return html.unescape(self.body.decode("utf-8", "replace"))


def http_request(
    method: str,
    target: bytes,
    body: bytes = b"",
    headers: Mapping[str, str | bytes] | None = None,
) -> bytes:
    """One request, exactly these bytes. ``Content-Length`` is the body's unless given."""
    fields: dict[str, str | bytes] = {"Host": "127.0.0.1", "Connection": "close"}
    fields["Accept"] = "text/html"
    fields.update(headers or {})
    if method == "POST" and "Content-Length" not in fields and "Transfer-Encoding" not in fields:
        fields["Content-Length"] = str(len(body))
    lines = [f"{method} ".encode() + target + b" HTTP/1.1"]
    for name, value in fields.items():
        lines.append(
            name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())
        )
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def send(base_url: str, data: bytes) -> Reply:
    """Write ``data``, close our side (nothing more will come), read the whole answer."""
    url = urlsplit(base_url)
    with socket.create_connection((url.hostname, url.port), timeout=TIMEOUT) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (413) and closed before reading everything: read it
        answer = _read_all(sock)
    return parse_reply(answer)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except TimeoutError:
        pytest.fail(f"no complete answer within {TIMEOUT} s; got {b''.join(chunks)[:200]!r}")
    except ConnectionResetError:
        pass  # what arrived before the reset is the answer
    return b"".join(chunks)


def parse_reply(answer: bytes) -> Reply:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3}) ", status_line + " ")
    assert match, f"not an HTTP answer: {answer[:200]!r}"
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return Reply(int(match.group(1)), headers, body)


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, body = out + rest[:size], rest[size + 2 :]
    return out


def multipart_form(fields: Mapping[str, str | bytes]) -> bytes:
    """A multipart/form-data body with the boundary ``XyZ``."""
    parts = [
        b'--XyZ\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
        % (name.encode(), value if isinstance(value, bytes) else value.encode())
        for name, value in fields.items()
    ]
    return b"".join(parts) + b"--XyZ--\r\n"


def assert_refused(reply: Reply, status: int, message: str, echo: bytes | None = None) -> None:
    """The exact 4xx, a sentence for a person, no trace of a crash, no reflection of input."""
    assert reply.status == status, (reply.status, reply.text[-600:])
    assert 400 <= reply.status < 500
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    assert message in reply.text, reply.text[-600:]
    for leak in ("Traceback", "Werkzeug Debugger", 'File "/', "sqlalchemy", "psycopg"):
        assert leak not in reply.text
    if echo is not None:
        assert echo not in reply.body


# --- sessions and CSRF tokens for the raw requests -------------------------------------------


@dataclass
class Visitor:
    """A browser session (cookie and CSRF token) that raw requests borrow."""

    base_url: str
    cookie: str
    token: str

    def headers(
        self, content_type: str | None = FORM, **extra: str | bytes
    ) -> dict[str, str | bytes]:
        fields: dict[str, str | bytes] = {"Cookie": f"bascule_session={self.cookie}"}
        if content_type is not None:
            fields["Content-Type"] = content_type
        fields.update({_header_name(name): value for name, value in extra.items()})
        return fields

    def form(self, raw: bytes = b"", **fields: str) -> bytes:
        """An url-encoded body with the CSRF token, the given fields, then ``raw`` verbatim."""
        parts = [b"csrf_token=" + self.token.encode()]
        parts += [
            name.encode() + b"=" + quote_from_bytes(value.encode()).encode()
            for name, value in fields.items()
        ]
        return b"&".join(parts) + raw

    def post(
        self,
        path: bytes,
        body: bytes,
        content_type: str | None = FORM,
        **header_values: str | bytes,
    ) -> Reply:
        request = http_request("POST", path, body, self.headers(content_type, **header_values))
        return send(self.base_url, request)


def _header_name(keyword: str) -> str:
    return "-".join(part.capitalize() for part in keyword.split("_"))


@pytest.fixture
def browsers(base_url: str) -> Iterator[list[httpx.Client]]:
    opened: list[httpx.Client] = []
    yield opened
    for browser in opened:
        browser.close()


def visitor(base_url: str, browsers: list[httpx.Client], page: str, signed_in: bool) -> Visitor:
    browser = httpx.Client(base_url=base_url, timeout=30)
    browsers.append(browser)
    if signed_in:
        assert sign_in(browser, JANE, STRONG_PASSWORD).status_code == 303
    token = csrf_token(browser.get(page).text)
    cookie = session_cookie(browser)
    assert cookie
    return Visitor(base_url, cookie, token)


def assert_jane_can_still_sign_in(base_url: str, password: str = STRONG_PASSWORD) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as browser:
        assert sign_in(browser, JANE, password).status_code == 303
        assert browser.get("/account").status_code == 200
    assert_audit_chain_intact()


def assert_audit_chain_intact() -> None:
    """Every refusal that was audited was stored whole: the hash chain still verifies."""
    db.session.rollback()  # see what the server committed
    chain = audit.verify()
    db.session.rollback()
    assert chain.ok, chain
    assert chain.checked > 0


def audited_failures(address: str) -> int:
    db.session.rollback()
    rows = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.event == "login.failure", AuditEvent.actor_email == address
        )
    ).all()
    db.session.rollback()
    return len(rows)


# --- the sign-in form ------------------------------------------------------------------------


def test_malformed_sign_in_requests(app, base_url: str, browsers) -> None:
    make_user(app)
    guest = visitor(base_url, browsers, "/login", signed_in=False)
    login = partial(guest.post, b"/login")

    # Raw invalid UTF-8: the unreadable form is dropped whole, its CSRF token with it.
    reply = login(guest.form(b"&email=\xff\xfe@acme.test&password=x"))
    assert_refused(reply, 400, FORM_EXPIRED, echo=b"\xff\xfe")
    # Percent-encoded invalid UTF-8 decodes to replacement characters: an ordinary failure.
    reply = login(guest.form(b"&email=%ff%fe@acme.test&password=%ff%fe"))
    assert_refused(reply, 401, GENERIC_FAILURE, echo=b"\xff\xfe")
    # NUL, encoded or raw, in the email (PostgreSQL refuses NUL in text: this was a 500).
    for body in (b"&email=ja%00ne@acme.test&password=x", b"&email=ja\x00ne@acme.test&password=x"):
        assert_refused(login(guest.form(body)), 401, GENERIC_FAILURE, echo=b"\x00")
    assert audited_failures("ja\ufffdne@acme.test") == 2  # recorded, not lost to a crash
    # Bytes in the User-Agent end up in the audit log.
    for agent in (b"evil\x00agent", b"\xff\xfe\xfd"):
        reply = login(guest.form(email="x@acme.test", password="x"), user_agent=agent)
        assert_refused(reply, 401, GENERIC_FAILURE, echo=agent)
    # Huge fields: refused like any failure, and not reflected back in full.
    reply = login(guest.form(email="a" * 100_000 + "@acme.test", password="x"))
    assert_refused(reply, 401, GENERIC_FAILURE, echo=b"a" * 300)
    assert len(reply.body) < 10_000
    reply = login(guest.form(email="x@acme.test", password="p" * 5000))
    assert_refused(reply, 401, GENERIC_FAILURE, echo=b"p" * 300)
    # Duplicate fields: the first counts; a forged second token changes nothing.
    reply = login(
        guest.form(b"&email=x@acme.test&email=y@x.test&password=a&password=b&csrf_token=f")
    )
    assert_refused(reply, 401, GENERIC_FAILURE)
    # Missing or empty fields.
    for body in (
        guest.form(),
        guest.form(email="", password=""),
        guest.form(b"&email&password&=&&"),
    ):
        assert_refused(login(body), 400, "Enter your email and your password.")
    reply = login(guest.form(b"&a=1" * 500))
    assert_refused(reply, 400, "Enter your email and your password.")

    # Wrong content types.
    as_json = json.dumps({"email": JANE, "password": "x"}).encode()
    assert_refused(login(as_json, content_type="application/json"), 400, FORM_EXPIRED)
    reply = login(as_json, content_type="application/json", x_csrftoken=guest.token)
    assert_refused(reply, 400, "Enter your email and your password.")
    form = guest.form(email=JANE, password="x")
    assert_refused(login(form, content_type="text/plain"), 400, FORM_EXPIRED)
    assert_refused(login(form, content_type=None), 400, FORM_EXPIRED)
    assert_refused(login(b"--x\r\n\r\n", content_type="multipart/form-data"), 400, FORM_EXPIRED)
    reply = login(b"\x00\xff garbage \r\n--", content_type=MULTIPART)
    assert_refused(reply, 400, FORM_EXPIRED, echo=b"garbage")
    fields: dict[str, str | bytes] = {"csrf_token": guest.token, "email": "x@acme.test"}
    reply = login(multipart_form({**fields, "password": b"wrong\xff\xfe"}), content_type=MULTIPART)
    assert_refused(reply, 401, GENERIC_FAILURE)

    # Too large: 2 MB in all, or one 300 KB multipart field.
    reply = login(guest.form(email="c" * 2_000_000))
    assert_refused(reply, 413, TOO_LARGE, echo=b"c" * 300)
    reply = login(multipart_form({**fields, "password": "d" * 300_000}), content_type=MULTIPART)
    assert_refused(reply, 413, TOO_LARGE, echo=b"d" * 300)

    # Lying about the length, or broken chunked framing.
    reply = login(guest.form(email=JANE, password="x"), content_length="5000")
    assert_refused(reply, 400, NOT_UNDERSTOOD)
    for length in ("abc", "-5"):
        assert_refused(login(form, content_length=length), 400, FORM_EXPIRED)
    reply = login(b"zz\r\nnot a chunk\r\n", transfer_encoding="chunked")
    assert_refused(reply, 400, NOT_UNDERSTOOD, echo=b"not a chunk")

    # A caller that asks for JSON gets problem JSON with the same plain message.
    reply = login(b"x", content_type="text/plain", accept="application/json")
    assert reply.status == 400
    assert reply.headers["content-type"] == "application/problem+json"
    assert json.loads(reply.body)["detail"].startswith(FORM_EXPIRED)

    assert_jane_can_still_sign_in(base_url)


# --- forms behind sign-in --------------------------------------------------------------------


def test_malformed_forms_on_signed_in_pages(app, base_url: str, browsers) -> None:
    make_user(app)
    jane = visitor(base_url, browsers, "/account", signed_in=True)
    change = partial(jane.post, b"/account/password")

    def passwords(current: str, new: str) -> bytes:
        return jane.form(current_password=current, new_password=new, new_password_confirm=new)

    assert_refused(change(jane.form()), 400, "The field 'current_password' is required.")
    reply = change(jane.form(current_password=STRONG_PASSWORD))
    assert_refused(reply, 400, "The field 'new_password' is required.")
    reply = change(passwords(STRONG_PASSWORD, "n" * 5000))
    assert_refused(reply, 400, "The field 'new_password' is too long.", echo=b"n" * 300)
    reply = change(passwords("c" * 5000, OTHER_STRONG_PASSWORD))
    assert_refused(reply, 400, "The field 'current_password' is too long.", echo=b"c" * 300)
    # Just over the policy's limit (1024), under the field's: the policy says why.
    reply = change(passwords(STRONG_PASSWORD, "w" + "ord " * 256))
    assert_refused(reply, 400, "Use at most 1024 characters.", echo=b"ord " * 100)
    # NUL and replacement characters are characters: the policy judges them.
    for new in ("\x00" * 16, "\udcff" * 16):
        reply = change(passwords(STRONG_PASSWORD, new.encode("utf-8", "replace").decode()))
        assert_refused(reply, 400, 'Repeats like "aaa" are easy to guess.', echo=b"\x00")
    reply = change(
        jane.form(b"&current_password=x&new_password=\xff\xfe&new_password_confirm=\xff")
    )
    assert_refused(reply, 400, FORM_EXPIRED, echo=b"\xff\xfe")
    reply = change(
        b'{"new_password": "x"}', content_type="application/json", x_csrftoken=jane.token
    )
    assert_refused(reply, 400, "The field 'current_password' is required.")
    assert_refused(change(passwords("a", "b"), content_type="text/plain"), 400, FORM_EXPIRED)
    assert_refused(change(jane.form(email="e" * 2_000_000)), 413, TOO_LARGE)
    reply = change(passwords(STRONG_PASSWORD, OTHER_STRONG_PASSWORD), content_length="9999")
    assert_refused(reply, 400, NOT_UNDERSTOOD)

    # Session revocation with ids that are not session ids.
    for sid in (b"%00%ff", b"\xff\xfe", b"a" * 5000, b"..", b"%2e%2e"):
        reply = jane.post(b"/account/sessions/" + sid + b"/revoke", jane.form())
        assert_refused(reply, 404, "That session has already ended.", echo=b"\xff\xfe")
    reply = jane.post(b"/account/sessions/..%2f..%2flogout/revoke", jane.form())
    assert_refused(reply, 404, "There is nothing at this address.")
    for path in (b"/account/sessions/x/revoke", b"/account/sessions/revoke-others", b"/logout"):
        assert_refused(jane.post(path, b"{}", content_type="application/json"), 400, FORM_EXPIRED)
        assert_refused(jane.post(path, jane.form(b"&\xff=\x00")), 400, FORM_EXPIRED)
        reply = jane.post(path, b"\x00garbage", content_type=MULTIPART)
        assert_refused(reply, 400, FORM_EXPIRED, echo=b"garbage")
    reply = send(base_url, http_request("GET", b"/logout", headers=jane.headers(None)))
    assert_refused(reply, 405, "This address does not accept that kind of request.")
    reply = send(base_url, http_request("BREW", b"/login", headers=jane.headers(None)))
    assert_refused(reply, 405, "This address does not accept that kind of request.")

    # Still signed in, with the same password; nothing was revoked or changed.
    reply = send(base_url, http_request("GET", b"/account", headers=jane.headers(None)))
    assert reply.status == 200 and JANE in reply.text
    assert_jane_can_still_sign_in(base_url)


# --- reset and invitation links --------------------------------------------------------------


def test_malformed_password_link_requests(app, base_url: str, browsers) -> None:
    make_user(app)
    guest = visitor(base_url, browsers, "/password/forgot", signed_in=False)
    forgot = partial(guest.post, b"/password/forgot")
    assert forgot(guest.form(email=JANE)).status == 200
    [mail] = outbox(app)
    reset_path = link_in(mail).encode()

    reply = forgot(guest.form(email="a" * 100_000 + "@acme.test"))
    assert_refused(reply, 400, "The field 'email' is too long.", echo=b"a" * 300)
    assert_refused(forgot(guest.form()), 400, "The field 'email' is required.")
    reply = forgot(
        b'{"email": "jane@acme.test"}', content_type="application/json", x_csrftoken=guest.token
    )
    assert_refused(reply, 400, "The field 'email' is required.")
    assert_refused(forgot(guest.form(email=JANE), content_type="text/plain"), 400, FORM_EXPIRED)
    assert_refused(forgot(guest.form(b"&email=\xff@acme.test")), 400, FORM_EXPIRED)
    assert_refused(forgot(guest.form(email="f" * 2_000_000)), 413, TOO_LARGE)
    # Odd but well-formed addresses get the usual answer (and no mail): nothing to enumerate.
    for body in (
        b"&email=ja%00ne@acme.test",
        b"&email=%ff%fe@acme.test",
        b"&email=jane@acme.test%00",
    ):
        reply = forgot(guest.form(body))
        assert reply.status == 200 and "Check your mail" in reply.text
        assert b"\x00" not in reply.body
    assert len(outbox(app)) == 1

    # The reset form, fed garbage; the link survives all of it.
    reset = partial(guest.post, reset_path)

    def chosen(password: str, confirm: str | None = None) -> bytes:
        return guest.form(
            password=password, password_confirm=password if confirm is None else confirm
        )

    assert_refused(
        reset(guest.form(password="x")), 400, "The field 'password_confirm' is required."
    )
    assert_refused(
        reset(chosen("p" * 5000)), 400, "The field 'password' is too long.", echo=b"p" * 300
    )
    reply = reset(chosen(OTHER_STRONG_PASSWORD, OTHER_STRONG_PASSWORD + "\x00"))
    assert_refused(reply, 400, "The two passwords are not the same.")
    assert_refused(reset(chosen("\x00" * 16)), 400, "Repeats like", echo=b"\x00")
    assert_refused(
        reset(guest.form(b"&password=\xff\xfe&password_confirm=\xff\xfe")), 400, FORM_EXPIRED
    )
    assert_refused(
        reset(chosen(OTHER_STRONG_PASSWORD), content_type="text/plain"), 400, FORM_EXPIRED
    )
    assert_refused(reset(chosen(OTHER_STRONG_PASSWORD), content_length="9999"), 400, NOT_UNDERSTOOD)
    assert_refused(reset(guest.form(password="g" * 2_000_000)), 413, TOO_LARGE)
    assert send(base_url, http_request("GET", reset_path + b"?x=%ff%00\xff")).status == 200

    # Tokens that are not tokens: the link page says so, for showing and for submitting.
    for kind in (b"/password/reset/", b"/invite/"):
        for token in (
            b"\xff\xfe",
            b"%ff%fe%00",
            b"%00",
            b"t" * 5000,
            b"..%2e",
            reset_path[-43:] + b"%00",
        ):
            reply = send(base_url, http_request("GET", kind + token))
            assert_refused(reply, 410, LINK_GONE, echo=b"\xff\xfe")
            reply = guest.post(kind + token, chosen(OTHER_STRONG_PASSWORD))
            assert_refused(reply, 410, LINK_GONE, echo=b"\xff\xfe")

    # An invitation link takes the same garbage.
    invite_path = urlsplit(invite(app, "ivy@acme.test")).path.encode()
    accept = partial(guest.post, invite_path)
    assert_refused(accept(guest.form()), 400, "The field 'password' is required.")
    assert_refused(accept(chosen("i" * 5000)), 400, "The field 'password' is too long.")
    assert_refused(accept(guest.form(b"&password=\xff&password_confirm=\xff")), 400, FORM_EXPIRED)
    assert_refused(accept(b"{}", content_type="application/json"), 400, FORM_EXPIRED)

    # Both links still work, once each.
    reply = accept(chosen(STRONG_PASSWORD))
    assert reply.status == 200 and "Your password is set" in reply.text
    reply = reset(chosen(OTHER_STRONG_PASSWORD))
    assert reply.status == 200 and "Your password is set" in reply.text
    assert_refused(reset(chosen(OTHER_STRONG_PASSWORD)), 410, LINK_GONE)
    assert_jane_can_still_sign_in(base_url, OTHER_STRONG_PASSWORD)


def outbox(app: Flask) -> list[Path]:
    folder = app.extensions["bascule"].settings.instance_dir / "outbox"
    return sorted(folder.glob("*.eml")) if folder.exists() else []


def link_in(mail: Path) -> str:
    message = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
    match = LINK.search(message.get_content())
    assert match, mail.read_text()
    return match.group(1)


# --- odd paths and query strings on pages ----------------------------------------------------


def test_odd_paths_and_query_strings_on_pages(app, base_url: str, browsers) -> None:
    make_user(app)
    jane = visitor(base_url, browsers, "/account", signed_in=True)

    def get(target: bytes, signed_in: bool = False) -> Reply:
        headers = jane.headers(None) if signed_in else {}
        return send(base_url, http_request("GET", target, headers=headers))

    # The sign-in page ignores a `next` it cannot use, and falls back to the account page.
    odd_next = [
        b"%ff%fe",
        b"\xff\xfe",
        b"%00",
        b"/%00/x",
        b"%2F" * 2000,
        b"/x%0d%0aSet-Cookie:%20a=b",
    ]
    for target in [b"/login?next=" + n for n in odd_next] + [
        b"/login?%",
        b"/login?&&==&;",
        b"/login?next",
    ]:
        reply = get(target)
        assert reply.status == 200, target
        assert 'name="next" value="/account"' in reply.text, target
        assert b"\x00" not in reply.body and b"\xff" not in reply.body
        assert "set-cookie: a=b" not in str(reply.headers).lower()
    reply = get(b"/login?next=%2Faccount%2Fsessions&next=https://evil.test/")
    assert 'name="next" value="/account/sessions"' in reply.text

    # Signed out, a protected page sends to sign in with a clean, encoded `next`.
    reply = get(b"/account/sessions?x=%ff%00\xff&y=%0d%0a")
    assert reply.status == 302
    location = reply.headers["location"]
    assert location.startswith("/login?next=") and location.isascii()
    assert not any(ch in location for ch in "\r\n\x00 ")

    # Signed in, odd queries change nothing.
    for target in (
        b"/account?changed=%ff%00",
        b"/account?changed=1%00",
        b"/account/sessions?\xff=\x00",
    ):
        reply = get(target, signed_in=True)
        assert reply.status == 200, target
        assert "Your password was changed" not in reply.text

    for target in (b"/password/forgot?email=%00\xff", b"/healthz?%ff%fe"):
        assert get(target).status == 200, target
    assert_refused(get(b"/nowhere/\xff\xfe%00"), 404, "There is nothing at this address.")
    assert_refused(get(b"/login%00"), 404, "There is nothing at this address.")
    # Past what the HTTP server reads in a request line: refused before the app sees it.
    reply = get(b"/login?next=" + b"a" * 70_000)
    assert reply.status == 414
    assert b"a" * 300 not in reply.body

    assert_jane_can_still_sign_in(base_url)


# --- a body that never arrives ---------------------------------------------------------------


def test_a_body_shorter_than_its_content_length_does_not_hang_anyone(
    app, base_url: str, browsers
) -> None:
    make_user(app)
    guest = visitor(base_url, browsers, "/login", signed_in=False)
    url = urlsplit(base_url)
    promised = http_request(
        "POST", b"/login", guest.form(email=JANE)[:30], guest.headers(content_length="5000")
    )
    with socket.create_connection((url.hostname, url.port), timeout=TIMEOUT) as stalled:
        stalled.sendall(promised)
        # While the server waits for the rest of that body, everyone else is served.
        with httpx.Client(base_url=base_url, timeout=TIMEOUT) as other:
            assert sign_in(other, JANE, STRONG_PASSWORD).status_code == 303
            assert other.get("/account").status_code == 200
        # The client gives up: the server answers at once, and plainly.
        stalled.shutdown(socket.SHUT_WR)
        reply = parse_reply(_read_all(stalled))
    assert_refused(reply, 400, NOT_UNDERSTOOD)
    assert_jane_can_still_sign_in(base_url)


# --- random input ----------------------------------------------------------------------------

FIELD_NAMES = st.sampled_from(["email", "password", "next", "csrf_token", "x", "", "em\x00ail"])
FIELD_VALUES = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    st.emails().map(str.encode),
    st.sampled_from([b"ja\x00ne@acme.test", b"\xff\xfe@acme.test", b"/\\evil", b"%00"]),
)
CONTENT_TYPES = st.sampled_from(
    [FORM, MULTIPART, "multipart/form-data", "application/json", "text/plain", None]
)


@st.composite
def login_requests(draw: st.DrawFn, token: str) -> tuple[bytes, str | None]:
    """A body and its content type: mostly forms that pass the CSRF check and reach the view
    (email and password present, values random, encoded or raw), sometimes any bytes at all."""
    kind = draw(st.sampled_from(["encoded", "encoded", "raw", "multipart", "anything"]))
    if kind == "anything":
        return draw(st.binary(max_size=2000)), draw(CONTENT_TYPES)
    fields = [("csrf_token", token.encode())]
    fields += [("email", draw(FIELD_VALUES)), ("password", draw(FIELD_VALUES))]
    fields += draw(st.lists(st.tuples(FIELD_NAMES, FIELD_VALUES), max_size=3))
    if kind == "multipart":
        return multipart_form(dict(fields)), MULTIPART
    if kind == "encoded":
        return b"&".join(n.encode() + b"=" + quote_from_bytes(v).encode() for n, v in fields), FORM
    return b"&".join(n.encode() + b"=" + v for n, v in fields), FORM


def test_random_input_to_sign_in_never_gives_a_server_error(app, base_url: str, browsers) -> None:
    make_user(app)
    guest = visitor(base_url, browsers, "/login", signed_in=False)

    @settings(
        max_examples=30,
        deadline=None,
        database=None,  # nothing written into the source tree
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(request=login_requests(guest.token))
    def post_random(request: tuple[bytes, str | None]) -> None:
        body, content_type = request
        reply = guest.post(b"/login", body, content_type=content_type)
        assert 400 <= reply.status < 500, (reply.status, reply.text[-400:])
        # A page for a person: the sign-in form with its alert, or an error page's sentence.
        assert 'class="alert"' in reply.text or re.search(r"<h1>4\d\d</h1>\s*<p>\w", reply.text)
        assert "Traceback" not in reply.text
        assert b"\x00" not in reply.body

    post_random()
    # Nothing random was Jane's address; and 30 failures stay under the per-IP limit (50).
    assert_jane_can_still_sign_in(base_url)
