"""What the SP tests check after each attempt: the refusal was plain, audited and signed nobody in.

The app runs in the test server's threads with their own database sessions; the test's session
is rolled back before each look, so it sees what the server committed rather than a stale read.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy import select

from idp.common.session_record import SESSION_PREFIX
from idp.common.store import Store
from idp.extensions import db
from idp.models import AuditEvent, SamlIdentity, User
from idp.services import users
from tests.saml.support import FakeIdp, SamlBrowser
from tests.support import sid_of

# Bits of SAML that must never come back to the browser in an error page.
_LEAKS = ("Traceback", "<saml", "&lt;saml", "samlp:", "urn:oasis:names", "lxml", "xmlsec")


def fresh() -> None:
    """Forget what this session read, so the next query sees the server's commits."""
    db.session.rollback()


def events(name: str) -> list[AuditEvent]:
    fresh()
    query = select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.seq)
    return list(db.session.scalars(query).all())


def rejections() -> list[str]:
    """The reasons of every ``saml.rejected`` entry, oldest first."""
    return [e.details["reason"] for e in events("saml.rejected")]


def user(email: str) -> User | None:
    fresh()
    return users.find_by_email(email)


def identities() -> list[SamlIdentity]:
    fresh()
    return list(db.session.scalars(select(SamlIdentity)).all())


def signed_out(client: httpx.Client) -> bool:
    """True when the browser holds no signed-in session: /account sends it to sign in."""
    answer = client.get("/account")
    return answer.status_code in (302, 303) and "/login" in answer.headers["location"]


def assert_plain_refusal(answer: httpx.Response, *echoed: str) -> None:
    """A 4xx page for people: no stack trace, no SAML, none of the forged values echoed."""
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:500])
    body = answer.text
    for leak in (*_LEAKS, *echoed):
        assert leak not in body, f"{leak!r} echoed in the error page"


class Refusals:
    """Checks each refused attempt in a test for its own audit entry, in order."""

    def __init__(self, seen: int | None = None) -> None:
        self.seen = len(rejections()) if seen is None else seen

    def check(
        self,
        answer: httpx.Response,
        client: httpx.Client,
        reason: str,
        *echoed: str,
        status: int = 400,
        label: str = "",
    ) -> None:
        """Refused with a plain page, audited once with ``reason``, the browser not signed in."""
        assert answer.status_code == status, (label, answer.status_code, answer.text[:500])
        assert_plain_refusal(answer, *echoed)
        reasons = rejections()
        assert reasons[self.seen :] == [reason], (label, reasons[self.seen :])
        self.seen = len(reasons)
        assert signed_out(client), label


def assert_refused(
    answer: httpx.Response, client: httpx.Client, reason: str, *echoed: str, status: int = 400
) -> None:
    """The only refusal so far in this test: plain, audited with ``reason``, nobody signed in."""
    Refusals(seen=0).check(answer, client, reason, *echoed, status=status)


def sign_in(
    browser: SamlBrowser, idp: FakeIdp, next_url: str = "", **claims: Any
) -> httpx.Response:
    """An honest SP-initiated sign-in, answered with ``claims``; the ACS's last answer."""
    request = browser.start(next_url)
    response = browser.signed(idp, browser.claims(request, **claims))
    return browser.post(response, request.relay_state)


def session_record(client: httpx.Client, store: Store) -> dict[str, Any]:
    """The store's record of the session this browser holds."""
    raw = store.get(SESSION_PREFIX + sid_of(client))
    assert raw is not None, "no session in the store"
    record: dict[str, Any] = json.loads(raw)
    return record
