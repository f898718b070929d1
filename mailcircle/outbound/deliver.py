"""Delivery: hand queued mail to the SMTP relay, or to a local Maildir when none is set.

Transports are constructor arguments (an ``SMTPRelay`` or a ``MaildirDrop``), so the
sender loop never asks where mail goes. Each attempt is counted before the mail is handed
over; a relay's 4xx and unreachable relays are retried with backoff; a 5xx on a fresh
connection is a permanent failure (and, at RCPT, a bounce against the member).
"""

from __future__ import annotations

import logging
import mailbox
import re
import smtplib
import socket
import sqlite3
import ssl
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol

from sqlite_utils import Database

from mailcircle.clock import Clock
from mailcircle.config import OutboundSettings
from mailcircle.db import transaction
from mailcircle.errors import DeliveryError, MailcircleError, RecipientRefused
from mailcircle.outbound import outbox

log = logging.getLogger(__name__)


class Transport(Protocol):
    def send(self, mail_from: str, rcpt_to: str, raw: bytes) -> None:
        """Deliver one mail or raise DeliveryError."""
        ...

    def close_idle(self) -> None:
        """Let go of a connection nobody has used for a while."""
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

    def close_idle(self) -> None:
        pass

    def close(self) -> None:
        pass


class SMTPRelay:
    """A connection to the relay, kept open between mails but never idle for long.

    A kept connection can outlive what is behind it (a `postfix reload` leaves it talking to
    an old smtpd with old tables; a relay's idle timeout closes it), so a failure on a kept
    connection (dropped, 421, or any 5xx) is tried again at once on a fresh one, and only
    the fresh connection's answer counts.
    """

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
        helo_name: str = "",
        idle_seconds: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host, self.port = host, port
        self.ca_file = ca_file
        self.starttls, self.user, self.password = starttls, user, password
        self.timeout = timeout
        self.helo_name = helo_name
        self.idle_seconds = idle_seconds
        self._monotonic = monotonic
        self._conn: smtplib.SMTP | None = None
        self._last_used = 0.0

    def ehlo_name(self, mail_from: str) -> str:
        """outbound.helo_name, else the envelope sender's domain (the circle's), which a relay
        that wants a fully qualified name accepts, unlike a bare host name."""
        _, at, domain = mail_from.rpartition("@")
        return self.helo_name or (domain.strip() if at else "") or socket.getfqdn()

    def _connect(self, mail_from: str) -> smtplib.SMTP:
        conn = smtplib.SMTP(
            self.host, self.port, timeout=self.timeout, local_hostname=self.ehlo_name(mail_from)
        )
        try:
            conn.ehlo()
            if self.starttls:
                cafile = str(self.ca_file) if self.ca_file else None
                conn.starttls(context=ssl.create_default_context(cafile=cafile))
                conn.ehlo()
            if self.user:
                conn.login(self.user, self.password)
        except BaseException:
            conn.close()
            raise
        return conn

    def close_idle(self) -> None:
        """Close the kept connection once it has been idle for ``idle_seconds``."""
        if self._conn is not None and self._monotonic() - self._last_used >= self.idle_seconds:
            log.debug("closing the relay connection after %gs idle", self.idle_seconds)
            self.close()

    def send(self, mail_from: str, rcpt_to: str, raw: bytes) -> None:
        self.close_idle()
        if self._conn is not None:
            try:
                self._transfer(mail_from, rcpt_to, raw)
                return
            except DeliveryError as err:
                if not _may_be_the_connections_fault(err):
                    raise
                log.info("the kept relay connection failed (%s); trying a fresh one", err)
                self.close()
        self._transfer(mail_from, rcpt_to, raw)

    def _transfer(self, mail_from: str, rcpt_to: str, raw: bytes) -> None:
        """One try on the current connection (opened if there is none)."""
        try:
            if self._conn is None:
                self._conn = self._connect(mail_from)
            self._conn.sendmail(mail_from, [rcpt_to], raw)
        except smtplib.SMTPServerDisconnected as err:
            self._drop()
            message = f"the relay closed the connection: {err}"
            raise DeliveryError(message, permanent=False) from None
        except smtplib.SMTPRecipientsRefused as err:
            code, reply = next(iter(err.recipients.values()))
            self._after_reply(code)
            raise _refused(code, reply) from None
        except smtplib.SMTPAuthenticationError as err:
            # A setting to fix, not a mail to give up on: retried with backoff meanwhile.
            self.close()
            answer = _from_reply(err.smtp_code, err.smtp_error)
            raise DeliveryError(
                f"the relay refused the login for {self.user!r} ({answer}); "
                "check outbound.user and the password",
                permanent=False,
            ) from None
        except smtplib.SMTPResponseException as err:
            self._after_reply(err.smtp_code)
            raise _from_reply(err.smtp_code, err.smtp_error) from None
        except (OSError, smtplib.SMTPException) as err:
            self._drop()
            raise DeliveryError(
                f"cannot reach the relay {self.host}:{self.port}: {err}", permanent=False
            ) from None
        finally:
            self._last_used = self._monotonic()

    def _after_reply(self, code: int) -> None:
        if code == 421:  # the relay is closing this connection
            self._drop()

    def _drop(self) -> None:
        """Forget a connection that is already broken (no QUIT to send)."""
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self._drop()


def _may_be_the_connections_fault(err: DeliveryError) -> bool:
    """Dropped (no code), closing (421) or refused (5xx): on a kept connection, any of these
    may be the old connection's doing rather than the mail's."""
    return err.code == 0 or err.code == 421 or err.code >= 500


_STATUS = re.compile(r"\A\s*([245]\.\d{1,3}\.\d{1,3})\b")


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _from_reply(code: int, reply: bytes | str) -> DeliveryError:
    return DeliveryError(
        f"the relay answered {code} {_text(reply)}", permanent=500 <= code < 600, code=code
    )


def _refused(code: int, reply: bytes | str) -> RecipientRefused:
    text = _text(reply)
    found = _STATUS.match(text)
    return RecipientRefused(
        f"the relay answered {code} {text}",
        permanent=500 <= code < 600,
        code=code,
        status=found.group(1) if found else str(code),
    )


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
        helo_name=settings.helo_name,
        idle_seconds=settings.idle_seconds,
    )


# What to do when the relay refuses a member's address for good (a bounce to record), called
# inside the transaction that marks the mail failed; returns what it recorded, or ''.
OnRefused = Callable[[Database, outbox.Outgoing, RecipientRefused], str]


class Sender:
    """Sends what is due, each attempt counted before the mail is handed over.

    When the relay has taken a mail but its "sent" cannot be written (a full disk, a lock
    held too long), the fact is kept here and written before anything else is sent, so the
    same mail never goes out again and again and the mails behind it are not stuck.
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        transport: Transport,
        *,
        on_refused: OnRefused | None = None,
    ) -> None:
        self.db, self.clock, self.transport = db, clock, transport
        self.on_refused = on_refused
        self.unrecorded: dict[int, datetime] = {}  # mail id -> when the relay took it
        self._started = False

    def deliver_due(self, limit: int = 100) -> int:
        """Send what is due now; returns how many mails were tried."""
        if not self._started:
            with transaction(self.db):
                released = outbox.release_unanswered(self.db, self.clock.now())
            if released:
                log.info(
                    "%d outgoing mail(s) were being handed over when the last run stopped;"
                    " sending them again",
                    released,
                )
            self._started = True
        self._record_unrecorded()
        mails = outbox.due(self.db, self.clock.now(), limit)
        for mail in mails:
            # One commit records the mail before as sent and counts this one's attempt: the
            # write lock is taken once a mail, and nothing is handed over before both hold.
            with transaction(self.db):
                self._record_unrecorded()
                mail = outbox.claim(self.db, mail, self.clock.now())
            try:
                self.transport.send(mail.mail_from, mail.rcpt_to, mail.raw)
            except DeliveryError as err:
                self._failed(mail, err)
                continue
            self.unrecorded[mail.id] = self.clock.now()
            log.info("sent #%d %s to %s", mail.id, mail.purpose, mail.rcpt_to)
        self._record_unrecorded()
        return len(mails)

    def _record_unrecorded(self) -> None:
        for mail_id, sent_at in list(self.unrecorded.items()):
            try:
                with transaction(self.db):
                    outbox.mark_sent(self.db, mail_id, sent_at)
            except (sqlite3.Error, MailcircleError) as err:
                raise MailcircleError(
                    f"the relay took outgoing mail #{mail_id}, but recording that failed ({err}); "
                    "nothing more is sent until it is recorded"
                ) from err
            del self.unrecorded[mail_id]

    def _failed(self, mail: outbox.Outgoing, err: DeliveryError) -> None:
        with transaction(self.db):
            status = outbox.mark_failed_attempt(self.db, mail, str(err), permanent=err.permanent)
            bounce = ""
            if status == outbox.FAILED and isinstance(err, RecipientRefused) and err.permanent:
                if self.on_refused is not None:
                    bounce = self.on_refused(self.db, mail, err)
        log.warning("outgoing #%d to %s: %s (now %s)", mail.id, mail.rcpt_to, err, status)
        if bounce:
            log.info("outgoing #%d: %s", mail.id, bounce)


def deliver_due(
    db: Database,
    clock: Clock,
    transport: Transport,
    limit: int = 100,
    *,
    on_refused: OnRefused | None = None,
) -> int:
    """Send what is due now with a one-off Sender; returns how many mails were tried."""
    return Sender(db, clock, transport, on_refused=on_refused).deliver_due(limit)
