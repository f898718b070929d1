"""Delivery: hand queued mail to the SMTP relay, or to a local Maildir when none is set.

Transports are constructor arguments (an ``SMTPRelay`` or a ``MaildirDrop``), so the
sender loop never asks where mail goes. A relay's 4xx and dropped connections are
retried with backoff; a 5xx is recorded as a permanent failure.
"""

from __future__ import annotations

import logging
import mailbox
import smtplib
import socket
import ssl
from pathlib import Path
from typing import Protocol

from sqlite_utils import Database

from mailcircle.clock import Clock
from mailcircle.config import OutboundSettings
from mailcircle.db import transaction
from mailcircle.errors import DeliveryError
from mailcircle.outbound import outbox

log = logging.getLogger(__name__)


class Transport(Protocol):
    def send(self, mail_from: str, rcpt_to: str, raw: bytes) -> None:
        """Deliver one mail or raise DeliveryError."""
        ...

    def close(self) -> None: ...


class MaildirDrop:
    """The embedded default: every outgoing mail becomes a file in a Maildir."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._box = mailbox.Maildir(str(path), create=True)

    def send(self, mail_from: str, rcpt_to: str, raw: bytes) -> None:
        envelope = f"Return-Path: <{mail_from}>\r\nDelivered-To: {rcpt_to}\r\n".encode()
        try:
            self._box.add(envelope + raw)
        except OSError as err:
            message = f"cannot write to the maildir {self.path}: {err}"
            raise DeliveryError(message, permanent=False) from err

    def close(self) -> None:
        pass


class SMTPRelay:
    """A persistent connection to the relay, reopened when it drops."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        starttls: bool = False,
        user: str = "",
        password: str = "",
        timeout: float = 30.0,
        ca_file: Path | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.ca_file = ca_file
        self.starttls, self.user, self.password = starttls, user, password
        self.timeout = timeout
        self._conn: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        conn = smtplib.SMTP(
            self.host, self.port, timeout=self.timeout, local_hostname=socket.gethostname()
        )
        conn.ehlo()
        if self.starttls:
            cafile = str(self.ca_file) if self.ca_file else None
            conn.starttls(context=ssl.create_default_context(cafile=cafile))
            conn.ehlo()
        if self.user:
            conn.login(self.user, self.password)
        return conn

    def send(self, mail_from: str, rcpt_to: str, raw: bytes) -> None:
        for attempt in (1, 2):  # a connection kept open may have been closed by the relay
            try:
                if self._conn is None:
                    self._conn = self._connect()
                self._conn.sendmail(mail_from, [rcpt_to], raw)
                return
            except smtplib.SMTPServerDisconnected as err:
                self._conn = None
                if attempt == 2:
                    message = f"the relay closed the connection: {err}"
                    raise DeliveryError(message, permanent=False) from err
            except smtplib.SMTPRecipientsRefused as err:
                code, reply = next(iter(err.recipients.values()))
                raise _from_reply(code, reply) from None
            except smtplib.SMTPAuthenticationError as err:
                # A setting to fix, not a mail to give up on: retried with backoff meanwhile.
                self.close()
                reply = _from_reply(err.smtp_code, err.smtp_error)
                raise DeliveryError(
                    f"the relay refused the login for {self.user!r} ({reply}); "
                    "check outbound.user and the password",
                    permanent=False,
                ) from None
            except smtplib.SMTPResponseException as err:
                raise _from_reply(err.smtp_code, err.smtp_error) from None
            except (OSError, smtplib.SMTPException) as err:
                self.close()
                raise DeliveryError(
                    f"cannot reach the relay {self.host}:{self.port}: {err}", permanent=False
                ) from None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self._conn = None


def _from_reply(code: int, reply: bytes | str) -> DeliveryError:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return DeliveryError(f"the relay answered {code} {text}", permanent=500 <= code < 600)


def transport_for(settings: OutboundSettings) -> Transport:
    if settings.relay is None:
        return MaildirDrop(settings.maildir)
    return SMTPRelay(
        settings.relay.host,
        settings.relay.port,
        starttls=settings.starttls,
        user=settings.user,
        password=settings.password(),
        ca_file=settings.ca_file,
    )


def deliver_due(db: Database, clock: Clock, transport: Transport, limit: int = 100) -> int:
    """Send what is due now; returns how many mails were tried."""
    mails = outbox.due(db, clock.now(), limit)
    for mail in mails:
        try:
            transport.send(mail.mail_from, mail.rcpt_to, mail.raw)
        except DeliveryError as err:
            with transaction(db):
                status = outbox.mark_failed_attempt(
                    db, mail, clock.now(), str(err), permanent=err.permanent
                )
            log.warning("outgoing #%d to %s: %s (now %s)", mail.id, mail.rcpt_to, err, status)
            continue
        with transaction(db):
            outbox.mark_sent(db, mail.id, clock.now())
        log.info("sent #%d %s to %s", mail.id, mail.purpose, mail.rcpt_to)
    return len(mails)
