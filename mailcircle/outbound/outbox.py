"""The outbox: outgoing mail, written in the same transaction as the change that causes it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import Compat32, compat32
from email.utils import getaddresses
from typing import Any

from sqlite_utils import Database

from mailcircle.clock import iso
from mailcircle.db import transaction
from mailcircle.errors import MailcircleError, NotFound


class _Wire(Compat32):
    """How queued mail is written: CRLF line ends, as SMTP sends them. A short ASCII header
    needs no folding, so it is written as is (the general folding costs more per mail than
    everything else put together, which shows with 10,000 digests)."""

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        if isinstance(value, str) and value.isascii() and "\n" not in value:
            if len(name) + len(value) + 2 <= 78:
                return f"{name}: {value}{self.linesep}"
        return str(super()._fold(name, value, sanitize))  # type: ignore[misc]  # not in typeshed


WIRE = _Wire(linesep="\r\n")


def wire_bytes(message: Message) -> bytes:
    """``message.as_bytes(policy=WIRE)``, byte for byte, in a third of the time for the mails
    compose builds (text and multipart parts, ASCII payloads already transfer-encoded, a
    boundary set). Anything else goes through the email package's generator."""
    out: list[bytes] = []
    if not _flatten(message, out):
        return message.as_bytes(policy=WIRE)
    return b"".join(out)


def _flatten(part: Message, out: list[bytes]) -> bool:
    """Append ``part`` in wire form to ``out``; False (and ``out`` unusable) where the fast
    path does not apply."""
    if part.preamble is not None or part.epilogue is not None:
        return False
    for name, value in part.raw_items():
        if isinstance(value, str) and value.isascii() and "\n" not in value:
            if len(name) + len(value) + 2 <= 78:  # what _Wire._fold writes as it is
                out.append(f"{name}: {value}\r\n".encode("ascii"))
                continue
        out.append(WIRE.fold_binary(name, value))
    out.append(b"\r\n")
    payload = part._payload  # type: ignore[attr-defined]
    maintype = part.get_content_maintype()
    if maintype == "multipart":
        boundary = part.get_boundary()
        if not isinstance(payload, list) or not boundary or part.get_content_subtype() == "signed":
            return False
        fence = f"--{boundary}".encode("ascii")
        for index, sub in enumerate(payload):
            out.append(fence + b"\r\n" if index == 0 else b"\r\n" + fence + b"\r\n")
            if not _flatten(sub, out):
                return False
        if not payload:
            out.append(fence + b"\r\n")
        out.append(b"\r\n" + fence + b"--\r\n")
        return True
    if maintype == "message" or not isinstance(payload, str) or not payload.isascii():
        return False
    if "\r" in payload:  # CRLF, CR and LF each end one line, as the generator reads them
        payload = payload.replace("\r\n", "\n").replace("\r", "\n")
    out.append(payload.replace("\n", "\r\n").encode("ascii"))
    return True


QUEUED = "queued"
SENT = "sent"
FAILED = "failed"

# Temporary failures are retried after 1, 2, 4 ... minutes, at most 6 hours apart,
# and given up (status failed) after this many attempts: about two days in all.
MAX_ATTEMPTS = 16
MAX_BACKOFF = timedelta(hours=6)


@dataclass(frozen=True)
class Outgoing:
    id: int
    circle_id: int | None
    purpose: str
    message_id: str
    mail_from: str
    rcpt_to: str
    raw: bytes
    status: str
    attempts: int

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Outgoing:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


def queue(
    db: Database,
    message: Message,
    *,
    now: datetime,
    circle_id: int | None,
    purpose: str,
    mail_from: str,
    spool_id: int | None = None,
) -> int:
    """Queue ``message`` to its To: address. Call inside the transaction making the change."""
    mail = prepare(
        message, circle_id=circle_id, purpose=purpose, mail_from=mail_from, spool_id=spool_id
    )
    return int(db.execute(_INSERT, _row(mail, now)).lastrowid or 0)


@dataclass(frozen=True)
class Prepared:
    """A mail made ready for the outbox before the transaction that queues it (the costly
    part, turning it into bytes, done outside the write lock)."""

    circle_id: int | None
    purpose: str
    message_id: str
    mail_from: str
    rcpt_to: str
    raw: bytes
    spool_id: int | None = None


def prepare(
    message: Message,
    *,
    circle_id: int | None,
    purpose: str,
    mail_from: str,
    rcpt_to: str = "",
    spool_id: int | None = None,
) -> Prepared:
    """``rcpt_to`` saves reading the To: header back when the caller knows it."""
    return Prepared(
        circle_id,
        purpose,
        message["Message-ID"],
        mail_from,
        rcpt_to or recipient_of(message),
        wire_bytes(message),
        spool_id,
    )


def queue_prepared(db: Database, mails: list[Prepared], *, now: datetime) -> None:
    """Queue many prepared mails at once. Call inside the transaction making the change."""
    with transaction(db):  # begins it, should the caller's put off its first write
        db.conn.executemany(_INSERT, (_row(mail, now) for mail in mails))


_INSERT = (
    "INSERT INTO outbox (circle_id, purpose, message_id, mail_from, rcpt_to, raw, status,"
    " attempts, next_attempt_at, spool_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)"
)


def _row(mail: Prepared, now: datetime) -> tuple[object, ...]:
    at = iso(now)
    return (
        mail.circle_id,
        mail.purpose,
        mail.message_id,
        mail.mail_from,
        mail.rcpt_to,
        mail.raw,
        QUEUED,
        at,
        mail.spool_id,
        at,
    )


def recipient_of(message: Message) -> str:
    """The address in the To: header."""
    return getaddresses([str(message["To"])])[0][1]


def due(db: Database, now: datetime, limit: int = 100) -> list[Outgoing]:
    return [
        Outgoing.from_row(row)
        for row in db.query(
            "SELECT * FROM outbox WHERE status = ? AND next_attempt_at <= ? ORDER BY id LIMIT ?",
            [QUEUED, iso(now), limit],
        )
    ]


def backoff(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th attempt: 1, 2, 4 ... minutes, at most 6 hours."""
    return min(timedelta(minutes=2 ** (max(attempts, 1) - 1)), MAX_BACKOFF)


def claim(db: Database, mail: Outgoing, now: datetime) -> Outgoing:
    """Count an attempt BEFORE the mail is handed to the relay, in its own commit, and push
    its next attempt out by the backoff. Whatever happens after (the relay's 250 cannot be
    recorded, the process dies), the mail is not handed over again before that time."""
    attempts = mail.attempts + 1
    db.execute(
        "UPDATE outbox SET attempts = ?, next_attempt_at = ?, handed_at = ? WHERE id = ?",
        [attempts, iso(now + backoff(attempts)), iso(now), mail.id],
    )
    return replace(mail, attempts=attempts)


def release_unanswered(db: Database, now: datetime) -> int:
    """Mail a stopped process handed to the relay without recording the answer is due again
    now (at least once: if the relay had taken it, it goes again with the same Message-ID).
    Call once when a sender starts; returns how many."""
    cursor = db.execute(
        "UPDATE outbox SET next_attempt_at = ?, handed_at = NULL"
        " WHERE status = ? AND handed_at IS NOT NULL",
        [iso(now), QUEUED],
    )
    return cursor.rowcount


def mark_sent(db: Database, mail_id: int, now: datetime) -> None:
    """The relay took the mail (its attempt was counted by ``claim``)."""
    db.execute(
        "UPDATE outbox SET status = ?, sent_at = ?, last_error = '', handed_at = NULL WHERE id = ?",
        [SENT, iso(now), mail_id],
    )


def mark_failed_attempt(db: Database, mail: Outgoing, error: str, *, permanent: bool) -> str:
    """Record why a claimed attempt failed; returns the new status (queued for a retry at the
    time ``claim`` set, or failed: permanently refused, or out of attempts)."""
    status = FAILED if permanent or mail.attempts >= MAX_ATTEMPTS else QUEUED
    db.execute(
        "UPDATE outbox SET status = ?, last_error = ?, handed_at = NULL WHERE id = ?",
        [status, error, mail.id],
    )
    return status


def retry(db: Database, mail_id: int, now: datetime) -> Outgoing:
    """Put a mail back in the queue, due now: a failed one with its attempts counted afresh,
    a queued one without waiting for its backoff. A sent mail cannot be retried."""
    mail = get(db, mail_id)
    if mail.status == SENT:
        raise MailcircleError(f"outgoing mail #{mail_id} was already sent; nothing to retry")
    attempts = 0 if mail.status == FAILED else mail.attempts
    db.execute(
        "UPDATE outbox SET status = ?, attempts = ?, next_attempt_at = ? WHERE id = ?",
        [QUEUED, attempts, iso(now), mail_id],
    )
    return get(db, mail_id)


def retry_failed(db: Database, now: datetime) -> list[int]:
    """Put every permanently failed mail back in the queue; returns their ids."""
    ids = [row[0] for row in db.execute("SELECT id FROM outbox WHERE status = ?", [FAILED])]
    for mail_id in ids:
        retry(db, mail_id, now)
    return ids


def details(db: Database, mail_id: int) -> dict[str, Any]:
    """Everything known about one outgoing mail, with its headers as (name, value) pairs."""
    get(db, mail_id)  # NotFound, with the sentence, for an unknown id
    row = dict(db.table("outbox").get(mail_id))
    head = BytesHeaderParser(policy=compat32).parsebytes(row.pop("raw"))
    row["headers"] = [(name, _readable(str(value))) for name, value in head.items()]
    return row


def _readable(value: str) -> str:
    """A header value unfolded, its encoded words decoded where they can be."""
    try:
        value = str(make_header(decode_header(value)))
    except (LookupError, ValueError, UnicodeDecodeError):
        pass
    return " ".join(value.split())


def get(db: Database, mail_id: int) -> Outgoing:
    rows = list(db.query("SELECT * FROM outbox WHERE id = ?", [mail_id]))
    if not rows:
        raise NotFound(f"there is no outgoing mail #{mail_id} (see `mailcircle outbox list`)")
    return Outgoing.from_row(rows[0])


def listing(db: Database, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    where, params = ("WHERE status = ?", [status]) if status else ("", [])
    return list(
        db.query(
            "SELECT id, created_at, purpose, rcpt_to, status, attempts, next_attempt_at,"
            f" last_error, message_id FROM outbox {where} ORDER BY id DESC LIMIT ?",
            [*params, limit],
        )
    )
