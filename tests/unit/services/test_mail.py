"""Mail delivery: to a real SMTP server on loopback, and to the outbox folder by default."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink

from idp.services.mail import Mailer


class Collector(Sink):
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.messages.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Collector, int]]:
    handler = Collector()
    with socket.socket() as probe:  # aiosmtpd needs the port up front
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def test_sends_over_smtp(smtp_server: tuple[Collector, int], tmp_path: Path) -> None:
    handler, port = smtp_server
    mailer = Mailer("Bascule <no-reply@acme.test>", f"smtp://127.0.0.1:{port}", tmp_path)
    mailer.send("jane@acme.test", "Reset your password", "Here is the link: https://x/y")
    [(sender, recipients, content)] = handler.messages
    assert sender == "no-reply@acme.test" and recipients == ["jane@acme.test"]
    assert b"Subject: Reset your password" in content and b"https://x/y" in content
    assert not list(tmp_path.iterdir())  # nothing went to the outbox


def test_without_smtp_mail_goes_to_the_outbox(tmp_path: Path) -> None:
    mailer = Mailer("Bascule <no-reply@acme.test>", None, tmp_path / "outbox")
    mailer.send("jane@acme.test", "Welcome", "Choose a password: https://x/invite")
    [message] = list((tmp_path / "outbox").glob("*.eml"))
    text = message.read_text()
    assert "To: jane@acme.test" in text and "https://x/invite" in text
