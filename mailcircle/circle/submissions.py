"""Submissions: a member's draft, queued for the next round."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from mailcircle.clock import iso
from mailcircle.errors import MailcircleError, NotFound
from mailcircle.rows import new_id
from mailcircle.text import without_prefixes

QUEUED = "queued"
UNTITLED = "(untitled)"

_ASK = re.compile(r"^\s*ask\s*:\s*(.*)$", re.I)


@dataclass(frozen=True)
class Draft:
    """What a draft mail says, before it is stored: pure, from the mail's text alone."""

    title: str
    body: str
    asks: str
    word_count: int


def _first_written(lines: list[str], start: int) -> int:
    """The index of the first line from ``start`` on with something on it."""
    while start < len(lines) and not lines[start].strip():
        start += 1
    return start


def read_draft(subject: str, text: str) -> Draft:
    """Title from the subject, an optional leading ``Ask:`` line, and the body as written.

    The body keeps every line break, blank line and indent; only trailing blank lines and
    the whitespace at the very end of lines are dropped.
    """
    title = without_prefixes(subject) or UNTITLED
    lines = [line.rstrip() for line in text.split("\n")]
    start = _first_written(lines, 0)  # indexes, not pop(0): linear on any number of blanks
    asks = ""
    if start < len(lines) and (match := _ASK.match(lines[start])):
        asks = match.group(1).strip()
        start = _first_written(lines, start + 1)
    end = len(lines)
    while end > start and not lines[end - 1]:
        end -= 1
    body = "\n".join(lines[start:end])
    return Draft(title=title, body=body, asks=asks, word_count=len(body.split()))


def create(
    db: Database,
    *,
    circle_id: int,
    member_id: int,
    spool_id: int,
    message_id: str,
    thread: tuple[str, ...],
    draft: Draft,
    now: datetime,
) -> int:
    """Store a draft in the queue. Call inside the transaction that answers its mail."""
    return new_id(
        db.table("submissions").insert(
            {
                "circle_id": circle_id,
                "member_id": member_id,
                "spool_id": spool_id,
                "message_id": message_id,
                "thread": " ".join(thread),
                "title": draft.title,
                "body": draft.body,
                "asks": draft.asks,
                "word_count": draft.word_count,
                "status": QUEUED,
                "submitted_at": iso(now),
            }
        )
    )


def find_by_message_id(db: Database, circle_id: int, message_id: str) -> dict[str, Any] | None:
    rows = list(
        db.query(
            "SELECT * FROM submissions WHERE circle_id = ? AND message_id = ?",
            [circle_id, message_id],
        )
    )
    return rows[0] if rows else None


def queue_position(db: Database, circle_id: int, submission_id: int) -> int:
    """1 for the oldest queued draft of the circle, and so on."""
    row = db.execute(
        "SELECT COUNT(*) FROM submissions WHERE circle_id = ? AND status = ? AND id <= ?",
        [circle_id, QUEUED, submission_id],
    ).fetchone()
    return int(row[0])


def next_queue_position(db: Database, circle_id: int) -> int:
    """The place in the queue a draft taken now will have."""
    row = db.execute(
        "SELECT COUNT(*) FROM submissions WHERE circle_id = ? AND status = ?", [circle_id, QUEUED]
    ).fetchone()
    return int(row[0]) + 1


WITHDRAWN = "withdrawn"


def withdraw(db: Database, submission_id: int) -> tuple[dict[str, Any], int]:
    """Take a draft out of the circle: it never goes (or goes on) to reviewers, and the
    open assignments on it close (their critique addresses answer kindly). Returns the
    draft's row and how many open assignments closed. Call inside a transaction."""
    rows = list(db.query("SELECT * FROM submissions WHERE id = ?", [submission_id]))
    if not rows:
        raise NotFound(f"there is no draft #{submission_id} (see `mailcircle drafts list`)")
    draft = rows[0]
    if draft["status"] == WITHDRAWN:
        raise MailcircleError(f"draft #{submission_id} was withdrawn already")
    db.execute("UPDATE submissions SET status = ? WHERE id = ?", [WITHDRAWN, submission_id])
    closed = db.execute(
        "UPDATE assignments SET status = ? WHERE submission_id = ? AND status = 'open'",
        [WITHDRAWN, submission_id],
    ).rowcount
    return draft, int(closed)


def listing(db: Database, circle_id: int, status: str | None = None) -> list[dict[str, Any]]:
    """Drafts of a circle, newest first, for `mailcircle drafts list`."""
    where, params = ("AND s.status = ?", [status]) if status else ("", [])
    return list(
        db.query(
            "SELECT s.id, s.title, m.email AS author, s.word_count, s.status, s.submitted_at"
            " FROM submissions s JOIN members m ON m.id = s.member_id"
            f" WHERE s.circle_id = ? {where} ORDER BY s.id DESC",
            [circle_id, *params],
        )
    )
