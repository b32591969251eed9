"""Outgoing mail: SMTP when ``BASCULE_SMTP_URL`` is set, else an outbox folder and the log.

The outbox default means invitations and password resets work on a fresh install with no mail
server: the operator finds each message as an ``.eml`` file and a log line.
"""

from __future__ import annotations

import logging
import smtplib
import time
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import unquote, urlsplit

log = logging.getLogger("bascule.mail")


class Mailer:
    def __init__(self, sender: str, smtp_url: str | None, outbox: Path) -> None:
        self.sender = sender
        self.smtp_url = smtp_url
        self.outbox = outbox

    def send(self, to: str, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, to, subject
        message.set_content(body)
        if self.smtp_url:
            self._send_smtp(message)
            log.info("mail sent to %s: %s", to, subject)
        else:
            self.outbox.mkdir(parents=True, exist_ok=True)
            path = self.outbox / f"{time.time_ns()}.eml"
            path.write_bytes(bytes(message))
            log.info("mail to %s (%s) written to %s", to, subject, path)

    def _send_smtp(self, message: EmailMessage) -> None:
        url = urlsplit(self.smtp_url or "")
        port = url.port or (465 if url.scheme == "smtps" else 587)
        client_class = smtplib.SMTP_SSL if url.scheme == "smtps" else smtplib.SMTP
        with client_class(url.hostname or "localhost", port, timeout=10) as client:
            if url.scheme == "smtp+starttls" or (url.scheme == "smtp" and port == 587):
                client.starttls()
            if url.username:
                client.login(unquote(url.username), unquote(url.password or ""))
            client.send_message(message)
