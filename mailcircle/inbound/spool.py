"""The spool: every accepted mail's raw bytes, committed before the sender hears 250.

One row per (message, circle recipient). The worker takes rows whose status is ``new``,
and records on each what became of it; nothing is ever deleted from here by the service.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from mailcircle.clock import Clock, iso
from mailcircle.db import transaction
from mailcircle.errors import MailcircleError, NotFound
from mailcircle.inbound.job import Spooled

NEW = "new"
DONE = "done"
FAILED = "failed"
DUPLICATE = "duplicate"
STATUSES = (NEW, DONE, "held", "refused", "ignored", "unhandled", DUPLICATE, FAILED)


class Busy(MailcircleError):
    """The database cannot be written just now (locked past the busy timeout, disk full):
    the mail stays new and is tried again after a pause."""


_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


def message_id_of(raw: bytes) -> str:
    """The Message-ID header of raw mail ('' if none), read from the header block only.

    This runs for every accepted mail before the 250, so it scans bytes instead of
    parsing: the header block ends at the first empty line.
    """
    end = raw.find(b"\r\n\r\n")
    if end == -1:
        end = raw.find(b"\n\n")
    head = raw if end == -1 else raw[:end]
    found = _MESSAGE_ID.search(head)
    if not found:
        return ""
    value = found.group(1).decode("utf-8", "replace")
    return " ".join(value.split())[:998]


def dedupe_key(raw: bytes, message_id: str) -> str:
    """What makes two deliveries 'the same mail': its Message-ID, else its exact bytes."""
    if message_id:
        return "mid:" + message_id.lower()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def null_sender(mail_from: str) -> str:
    """The envelope sender as stored: ``MAIL FROM:<>`` (a bounce or notification) is ''."""
    return "" if mail_from.strip() in ("", "<>") else mail_from


@dataclass(frozen=True)
class Arrival:
    """One mail as the network edge accepted it, before it is committed."""

    source: str  # smtp, lmtp, imap
    peer: str
    mail_from: str
    recipients: tuple[tuple[str, int | None], ...]  # (address, circle id) for each
    raw: bytes


def store_many(db: Database, clock: Clock, arrivals: list[Arrival]) -> list[list[int]]:
    """Commit several accepted mails in one transaction (one disk sync for them all).

    Returns, for each arrival, the ids of its rows: one per recipient.
    """
    now = iso(clock.now())
    stored = []
    with transaction(db):
        for arrival in arrivals:
            if not arrival.recipients:
                raise MailcircleError("a spooled mail needs at least one recipient")
            message_id = message_id_of(arrival.raw)
            key = dedupe_key(arrival.raw, message_id)
            ids = []
            for rcpt_to, circle_id in arrival.recipients:
                cursor = db.execute(
                    "INSERT INTO spool (received_at, source, peer, mail_from, rcpt_to, circle_id,"
                    " message_id, dedupe_key, size, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        now,
                        arrival.source,
                        arrival.peer,
                        null_sender(arrival.mail_from),
                        rcpt_to,
                        circle_id,
                        message_id,
                        key,
                        len(arrival.raw),
                        arrival.raw,
                    ],
                )
                ids.append(int(cursor.lastrowid or 0))
            stored.append(ids)
    return stored


def store(
    db: Database,
    clock: Clock,
    *,
    source: str,
    peer: str,
    mail_from: str,
    recipients: list[tuple[str, int | None]],
    raw: bytes,
) -> list[int]:
    """Commit one accepted mail, a row per (recipient, circle id); returns the row ids."""
    arrival = Arrival(source, peer, mail_from, tuple(recipients), raw)
    return store_many(db, clock, [arrival])[0]


def get(db: Database, spool_id: int) -> Spooled:
    rows = list(db.query("SELECT * FROM spool WHERE id = ?", [spool_id]))
    if not rows:
        raise NotFound(f"there is no inbound message #{spool_id} (see `mailcircle inbox list`)")
    return Spooled.from_row(rows[0])


def pending(db: Database, limit: int = 50) -> list[Spooled]:
    """The oldest mails waiting for the worker."""
    return [
        Spooled.from_row(row)
        for row in db.query(
            "SELECT * FROM spool WHERE status = ? ORDER BY id LIMIT ?", [NEW, limit]
        )
    ]


def has_copy(db: Database, raw: bytes, rcpt_to: str) -> bool:
    """Whether this very mail for this recipient is in the spool already (an IMAP re-fetch)."""
    key = dedupe_key(raw, message_id_of(raw))
    row = db.execute(
        "SELECT 1 FROM spool WHERE dedupe_key = ? AND rcpt_to = ? LIMIT 1", [key, rcpt_to]
    ).fetchone()
    return row is not None


def earlier_copy(db: Database, mail: Spooled) -> int | None:
    """An earlier row holding the same mail for the same recipient that was already dealt with."""
    row = db.execute(
        "SELECT id FROM spool WHERE dedupe_key = ? AND rcpt_to = ? AND id < ?"
        " AND status NOT IN (?, ?, ?) ORDER BY id LIMIT 1",
        [mail.dedupe_key, mail.rcpt_to, mail.id, NEW, FAILED, DUPLICATE],
    ).fetchone()
    return row[0] if row else None


def record(
    db: Database, clock: Clock, spool_id: int, status: str, outcome: str, error: str = ""
) -> None:
    """Record what became of a mail. Call inside the transaction that made the change."""
    db.execute(
        "UPDATE spool SET status = ?, outcome = ?, error = ?, attempts = attempts + 1,"
        " processed_at = ?, started = 0, claimed_by = NULL WHERE id = ?",
        [status, outcome, error, iso(clock.now()), spool_id],
    )


def retry(db: Database, spool_id: int) -> Spooled:
    """Put a mail back in front of the worker (after a fix, or a moderator's decision)."""
    mail = get(db, spool_id)
    if mail.status == NEW:
        raise MailcircleError(f"inbound message #{spool_id} is already waiting to be processed")
    if mail.status == DONE:
        raise MailcircleError(
            f"inbound message #{spool_id} was processed already ({mail.outcome}); "
            "retrying it would act on it twice"
        )
    with transaction(db):
        db.execute(
            "UPDATE spool SET status = ?, error = '', started = 0, crashes = 0 WHERE id = ?",
            [NEW, spool_id],
        )
    return get(db, spool_id)


def claim(db: Database, spool_id: int, pid: int) -> None:
    """Count an attempt before it starts, naming the process that makes it (the worker's
    connection commits without a disk sync of its own: see ``process.Worker``)."""
    with transaction(db):
        db.execute(
            "UPDATE spool SET started = started + 1, claimed_by = ? WHERE id = ?",
            [pid, spool_id],
        )


def unclaim(db: Database, spool_id: int) -> None:
    """Take back an attempt that stopped for the moment's reasons (a busy or full database)."""
    with transaction(db):
        db.execute(
            "UPDATE spool SET started = MAX(started - 1, 0), claimed_by = NULL WHERE id = ?",
            [spool_id],
        )


def crashed(db: Database, pid: int, reason: str) -> int:
    """The worker process ``pid`` died: charge the mail it was on. Returns rows charged."""
    with transaction(db):
        cursor = db.execute(
            "UPDATE spool SET crashes = crashes + 1, claimed_by = NULL, error = ?"
            " WHERE status = ? AND claimed_by = ?",
            [reason, NEW, pid],
        )
    return cursor.rowcount


def listing(db: Database, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Rows for `mailcircle inbox list`: everything but the raw bytes, newest first."""
    where, params = ("WHERE status = ?", [status]) if status else ("", [])
    return list(
        db.query(
            "SELECT id, received_at, source, mail_from, rcpt_to, message_id, size, status,"
            f" outcome FROM spool {where} ORDER BY id DESC LIMIT ?",
            [*params, limit],
        )
    )


def counts(db: Database) -> dict[str, int]:
    return dict(db.execute("SELECT status, COUNT(*) FROM spool GROUP BY status").fetchall())


def settled(db: Database) -> int:
    """How many spooled mails have been dealt with (any status but new)."""
    return int(db.execute("SELECT COUNT(*) FROM spool WHERE status != ?", [NEW]).fetchone()[0])
