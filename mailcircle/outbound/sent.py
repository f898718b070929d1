"""What the circle has sent: every outgoing mail is in the outbox, so a reply can be read
against the mail it answers, and answers to one address can be counted.

Every query here uses an index (outbox_message_rcpt leads with message_id; outbox_recipient covers
rcpt_to and created_at).
"""

from __future__ import annotations

import email
import functools
import re
from dataclasses import dataclass
from datetime import datetime
from email.header import decode_header, make_header
from typing import Any

from sqlite_utils import Database

from mailcircle.clock import iso

# The Subject header of our own mail (ASCII on the wire: RFC 2047 words), with its folds
_SUBJECT = re.compile(rb"^subject:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


@dataclass
class SentMail:
    id: int
    purpose: str  # the template that made it
    message_id: str
    rcpt_to: str
    created_at: str
    raw: bytes

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SentMail:
        return cls(
            row["id"],
            row["purpose"],
            row["message_id"],
            row["rcpt_to"],
            row["created_at"],
            row["raw"],
        )

    @property
    def subject(self) -> str:
        # read from the header block alone: a reply is compared with several of ours
        end = self.raw.find(b"\r\n\r\n")
        found = _SUBJECT.search(self.raw, 0, len(self.raw) if end < 0 else end + 2)
        value = found.group(1).decode("ascii", "replace") if found else ""
        value = re.sub(r"\r?\n[ \t]", " ", value).strip()  # unfolded
        try:
            return str(make_header(decode_header(value)))
        except Exception:  # our own mail, so not expected: the subject as written
            return value

    @property
    def text(self) -> str:
        """The plain-text part of the mail, as its reader saw it."""
        message = self._message
        for part in message.walk():
            if part.get_content_type() == "text/plain":
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    return payload.decode(part.get_content_charset() or "utf-8", "replace")
        return ""

    @functools.cached_property
    def _message(self) -> email.message.Message:
        # compat32: a ninth of the modern policy's cost, and a draft reads several of these
        return email.message_from_bytes(self.raw)


def answered(db: Database, message_ids: tuple[str, ...]) -> SentMail | None:
    """The mail of ours that a reply answers: the first of ``message_ids`` (give the
    In-Reply-To first, then References newest first) that the circle sent."""
    for message_id in message_ids[:20]:
        if not message_id:
            continue
        rows = list(db.query("SELECT * FROM outbox WHERE message_id = ?", [message_id]))
        if rows:
            return SentMail.from_row(rows[0])
    return None


def recent_to(db: Database, rcpt_to: str, since: datetime, limit: int = 10) -> list[SentMail]:
    """Mail the circle sent to one address since a moment, newest first."""
    return [
        SentMail.from_row(row)
        for row in db.query(
            "SELECT * FROM outbox WHERE rcpt_to = ? AND created_at >= ?"
            " ORDER BY created_at DESC LIMIT ?",
            [rcpt_to, iso(since), limit],
        )
    ]


def answers_to(db: Database, rcpt_to: str, since: datetime) -> int:
    """How many answers to inbound mail went to one address since a moment."""
    row = db.execute(
        "SELECT COUNT(*) FROM outbox WHERE rcpt_to = ? AND created_at >= ?"
        " AND spool_id IS NOT NULL",
        [rcpt_to, iso(since)],
    ).fetchone()
    return int(row[0])


def answered_for_copy(db: Database, dedupe_key: str, spool_id: int, to: str) -> bool:
    """Whether another spooled copy of the same mail (one per circle address it was sent
    to) already answered ``to``: a mail to a thousand circle addresses gets one answer."""
    row = db.execute(
        # through the copies of this mail (a few), not all mail ever sent to ``to`` (+)
        "SELECT 1 FROM spool s JOIN outbox o ON o.spool_id = s.id"
        " WHERE s.dedupe_key = ? AND s.id != ? AND +o.rcpt_to = ? LIMIT 1",
        [dedupe_key, spool_id, to],
    ).fetchone()
    return row is not None
