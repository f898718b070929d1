"""IMAP mode: run a circle from an ordinary mailbox (``mailcircle poll``).

Mail arrives in a folder of an IMAP mailbox and flows into the same spool as SMTP mail.
For each message, in this order:

1. it is fetched without touching its flags (BODY.PEEK[]);
2. the circle address it was sent to is read from Delivered-To, X-Original-To, To, then
   Cc: the first address in that order that belongs to a circle, plus-suffix and all;
3. it is committed to the spool, together with the folder's UIDVALIDITY and the last UID
   taken, in one transaction;
4. only then is it marked on the server: moved to ``processed_folder``, or flagged \\Seen
   when none is set. Mail that cannot be taken (no circle address in it, or too large)
   is moved to ``failed_folder``, or flagged \\Flagged, and logged.

A crash between 3 and 4 leaves the message where it was; seen again, it is recognised
(same Message-ID, or same bytes, for the same address) and only marked. Nothing is ever
deleted from the mailbox. A changed UIDVALIDITY makes the poller look at the whole
folder again; what it had already taken is recognised the same way.

The poller uses IDLE when the server offers it and polls every ``poll_seconds``
otherwise; a dropped connection or a server restart is retried with backoff.
"""

from __future__ import annotations

import imaplib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from pathlib import Path

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError
from sqlite_utils import Database

from mailcircle import addresses
from mailcircle import db as database
from mailcircle.circle import circles
from mailcircle.clock import Clock, iso
from mailcircle.config import ImapSettings
from mailcircle.db import transaction
from mailcircle.errors import ConfigError, MailcircleError
from mailcircle.inbound import spool

log = logging.getLogger(__name__)

RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "To", "Cc")
FETCH_BATCH = 25
IDLE_RENEW_SECONDS = 25 * 60  # RFC 2177: re-issue IDLE at least every 29 minutes
MAX_BACKOFF_SECONDS = 60
SEEN, FLAGGED = rb"\Seen", rb"\Flagged"

_headers = BytesHeaderParser(policy=compat32)
NETWORK_ERRORS = (IMAPClientError, imaplib.IMAP4.error, OSError, socket.timeout, ssl.SSLError)


@dataclass
class PollReport:
    """What one look at the folder did."""

    seen: int = 0  # messages looked at
    spooled: int = 0  # new mail committed to the spool
    already: int = 0  # taken before (a re-fetch after a crash or a UIDVALIDITY change)
    failed: list[str] = field(default_factory=list)  # one sentence per message not taken

    def __str__(self) -> str:
        return (
            f"{self.seen} looked at, {self.spooled} new, {self.already} already taken, "
            f"{len(self.failed)} could not be taken"
        )


def circle_recipient(raw: bytes, is_circle: Callable[[str], bool]) -> str:
    """The circle address a mail was sent to, from its headers ('' if none)."""
    try:
        headers = _headers.parsebytes(raw)
    except Exception:  # a header block the parser cannot read at all
        return ""
    for name in RECIPIENT_HEADERS:
        values = [str(value) for value in headers.get_all(name, [])]
        for _, address in getaddresses(values):
            if "@" in address and is_circle(address):
                return addresses.normalize(address)
    return ""


def envelope_sender(raw: bytes) -> str:
    """The envelope sender as the delivering server recorded it (Return-Path), else From."""
    try:
        headers = _headers.parsebytes(raw)
    except Exception:
        return ""
    return_path = headers.get("Return-Path")
    if return_path is not None:
        text = str(return_path).strip()
        return "" if text in ("<>", "") else addresses.normalize(text)
    return addresses.first_address(str(headers.get("From", "")))[1]


class ImapPoller:
    def __init__(
        self,
        settings: ImapSettings,
        db_path: Path,
        clock: Clock,
        *,
        max_message_bytes: int,
        on_spooled: Callable[[], None] = lambda: None,
    ) -> None:
        if not settings.host:
            raise MailcircleError("IMAP is not set up: give imap.host in the settings file")
        self.settings = settings
        self.db_path = db_path
        self.clock = clock
        self.max_message_bytes = max_message_bytes
        self.on_spooled = on_spooled
        self.account = f"{settings.user}@{settings.host}:{settings.port}"
        self.idling = threading.Event()  # set while the poller waits in IDLE

    # --- connecting ---------------------------------------------------------------------

    def connect(self) -> IMAPClient:
        s = self.settings
        if s.ca_file is not None and not s.ca_file.is_file():
            raise ConfigError(f"imap.ca_file names {s.ca_file}, which does not exist")
        context = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
        client = IMAPClient(
            s.host, s.port, ssl=s.security == "tls", ssl_context=context, timeout=60
        )
        try:
            if s.security == "starttls":
                client.starttls(context)
            client.login(s.user, s.password())
            if s.processed_folder or s.failed_folder:
                for folder in (s.processed_folder, s.failed_folder):
                    if folder and not client.folder_exists(folder):
                        client.create_folder(folder)
        except BaseException:
            _close(client)
            raise
        return client

    # --- one look at the folder ----------------------------------------------------------

    def poll_once(self, client: IMAPClient, db: Database) -> PollReport:
        s = self.settings
        selected = client.select_folder(s.folder)
        uidvalidity = int(selected[b"UIDVALIDITY"])
        last_uid = self._last_uid(db, uidvalidity)
        moving = bool(s.processed_folder)
        # When processed mail is moved away, whatever is still in the folder is unhandled
        # (including mail a crash left behind); otherwise only UIDs past the last one taken.
        criteria: list[object] = ["ALL"] if moving else ["UID", f"{last_uid + 1}:*"]
        uids = sorted(uid for uid in client.search(criteria) if moving or uid > last_uid)
        report = PollReport()
        for start in range(0, len(uids), FETCH_BATCH):
            batch = uids[start : start + FETCH_BATCH]
            self._take(client, db, batch, uidvalidity, report)
        if report.spooled:
            self.on_spooled()
        if uids:
            log.info("IMAP %s: %s", s.folder, report)
        return report

    def _take(
        self,
        client: IMAPClient,
        db: Database,
        batch: list[int],
        uidvalidity: int,
        report: PollReport,
    ) -> None:
        fetched = client.fetch(batch, ["BODY.PEEK[]", "RFC822.SIZE"])
        arrivals: list[spool.Arrival] = []
        taken: list[int] = []
        failed: list[int] = []
        for uid in batch:
            data = fetched.get(uid)
            if data is None:  # expunged meanwhile by someone else
                continue
            report.seen += 1
            raw = bytes(data.get(b"BODY[]") or b"")
            size = int(data.get(b"RFC822.SIZE") or len(raw))
            rcpt = circle_recipient(raw, lambda a: circles.find(db, a) is not None)
            problem = ""
            if size > self.max_message_bytes:
                problem = f"it is {size} bytes, over the limit of {self.max_message_bytes}"
            elif not rcpt:
                problem = "no circle's address is in " + ", ".join(RECIPIENT_HEADERS)
            if problem:
                report.failed.append(f"UID {uid}: {problem}")
                log.warning("IMAP %s UID %d not taken: %s", self.settings.folder, uid, problem)
                failed.append(uid)
                continue
            taken.append(uid)
            if spool.has_copy(db, raw, rcpt):
                report.already += 1
                continue
            circle = circles.find(db, rcpt)
            arrivals.append(
                spool.Arrival(
                    source="imap",
                    peer=self.account,
                    mail_from=envelope_sender(raw),
                    recipients=((rcpt, circle.id if circle else None),),
                    raw=raw,
                )
            )
        with transaction(db):
            spool.store_many(db, self.clock, arrivals)
            self._save_last_uid(db, uidvalidity, max(batch))
        report.spooled += len(arrivals)
        # Only now, with the mail committed, is it marked on the server.
        self._mark(client, taken, self.settings.processed_folder, SEEN)
        self._mark(client, failed, self.settings.failed_folder, FLAGGED)

    def _mark(self, client: IMAPClient, uids: list[int], folder: str, flag: bytes) -> None:
        if not uids:
            return
        if not folder:
            client.add_flags(uids, [flag])
        elif client.has_capability("MOVE"):
            client.move(uids, folder)
        else:  # COPY, then remove the original copy only (UIDPLUS's UID EXPUNGE)
            client.copy(uids, folder)
            client.add_flags(uids, [rb"\Deleted"])
            if client.has_capability("UIDPLUS"):
                client.uid_expunge(uids)

    def _last_uid(self, db: Database, uidvalidity: int) -> int:
        row = db.execute(
            "SELECT uidvalidity, last_uid FROM imap_state WHERE account = ? AND folder = ?",
            [self.account, self.settings.folder],
        ).fetchone()
        if row is None:
            return 0
        if row[0] != uidvalidity:
            log.warning(
                "IMAP %s: UIDVALIDITY changed from %s to %s; looking at the whole folder again "
                "(mail already taken is recognised and not processed twice)",
                self.settings.folder,
                row[0],
                uidvalidity,
            )
            return 0
        return int(row[1])

    def _save_last_uid(self, db: Database, uidvalidity: int, last_uid: int) -> None:
        db.execute(
            "INSERT INTO imap_state (account, folder, uidvalidity, last_uid, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (account, folder) DO UPDATE SET"
            " uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid,"
            " updated_at = excluded.updated_at",
            [self.account, self.settings.folder, uidvalidity, last_uid, iso(self.clock.now())],
        )

    # --- running until stopped ------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Watch the folder until ``stop`` is set: IDLE or polling, reconnecting on trouble."""
        db = database.connect(self.db_path)
        backoff = 1.0
        try:
            while not stop.is_set():
                client: IMAPClient | None = None
                try:
                    client = self.connect()
                    log.info(
                        "IMAP: connected to %s, watching %s", self.account, self.settings.folder
                    )
                    backoff = 1.0
                    self.poll_once(client, db)
                    while not stop.is_set():
                        self._wait_for_news(client, stop)
                        if not stop.is_set():
                            self.poll_once(client, db)
                except LoginError as err:
                    log.error(
                        "IMAP: %s refused the login for %s: %s",
                        self.settings.host,
                        self.settings.user,
                        err,
                    )
                except NETWORK_ERRORS as err:
                    log.warning(
                        "IMAP %s:%d: %s; trying again in %.0f s",
                        self.settings.host,
                        self.settings.port,
                        describe_error(err),
                        backoff,
                    )
                except MailcircleError as err:
                    log.error("IMAP: %s", err)
                except Exception:  # never let one bad moment stop the poller for good
                    log.exception("IMAP: unexpected error; reconnecting in %.0f s", backoff)
                finally:
                    if client is not None:
                        _close(client)
                if not stop.is_set():
                    stop.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        finally:
            db.close()

    def _wait_for_news(self, client: IMAPClient, stop: threading.Event) -> None:
        if not client.has_capability("IDLE"):
            stop.wait(self.settings.poll_seconds)
            client.noop()
            return
        client.idle()
        self.idling.set()
        started = time.monotonic()
        try:
            while not stop.is_set() and time.monotonic() - started < IDLE_RENEW_SECONDS:
                if client.idle_check(timeout=0.5):
                    return
        finally:
            self.idling.clear()
            client.idle_done()


def _close(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # the connection is already gone; nothing more to tidy
        try:
            client.shutdown()
        except Exception:
            pass


def describe_error(err: BaseException) -> str:
    """One sentence for a connection, TLS or protocol error (no Python text)."""
    if isinstance(err, ssl.SSLCertVerificationError):
        reason = err.verify_message or "it is not trusted"
        return (
            f"the server's TLS certificate could not be verified ({reason}); if your own CA "
            "signed it, give that CA's certificate in imap.ca_file"
        )
    if isinstance(err, ssl.SSLError):
        reason = (err.reason or str(err)).replace("_", " ").lower()
        return (
            f"the TLS handshake failed ({reason}); check imap.security and imap.port "
            "(993 is for tls, 143 for starttls)"
        )
    if isinstance(err, LoginError):
        return f"the server refused the login: {_server_text(err)}"
    if isinstance(err, ConnectionRefusedError):
        return "the connection was refused (is the IMAP server running, on that port?)"
    if isinstance(err, socket.gaierror):
        return "the host name could not be found (check imap.host)"
    if isinstance(err, TimeoutError | socket.timeout):
        return "the server did not answer in time"
    if isinstance(err, ConnectionError | EOFError):
        return "the server closed the connection"
    if isinstance(err, IMAPClientError | imaplib.IMAP4.error):
        return f"the server answered: {_server_text(err)}"
    if isinstance(err, OSError):
        return f"the connection failed ({(err.strerror or str(err)).lower()})"
    return f"the connection failed ({type(err).__name__})"


def _server_text(err: BaseException) -> str:
    text = str(err)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return text.strip() or type(err).__name__


def poll_folder_once(poller: ImapPoller, db: Database) -> PollReport:
    """`mailcircle poll --once`: connect, take what is there, disconnect."""
    client = poller.connect()
    try:
        return poller.poll_once(client, db)
    finally:
        _close(client)
