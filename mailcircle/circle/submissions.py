"""Submissions: a member's draft, queued for the next round."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

from sqlite_utils import Database

from mailcircle.clock import iso
from mailcircle.db import transaction
from mailcircle.errors import MailcircleError, NotFound
from mailcircle.mail import attachments_of
from mailcircle.rows import new_id
from mailcircle.text import without_prefixes

QUEUED = "queued"
UNTITLED = "(untitled)"
UNNAMED_FILE = "draft"  # the name reviewers see for an attached file that came without one

File = tuple[str, str, bytes]  # an attached file: (filename, content type, bytes)

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
    files: Sequence[File] = (),
) -> int:
    """Store a draft in the queue, with the files attached to it (``files_in``), which go
    to its reviewers. Call inside the transaction that answers its mail."""
    with transaction(db):
        submission_id = new_id(
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
        db.conn.executemany(
            "INSERT INTO draft_files (submission_id, position, filename, content_type, payload)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                (submission_id, position, filename, content_type, payload)
                for position, (filename, content_type, payload) in enumerate(files)
            ),
        )
    return submission_id


def files_in(raw: bytes) -> tuple[File, ...]:
    """The files a draft mail carries to its reviewers, read from its raw bytes once, when
    the draft is taken: the parts ``mailcircle.mail.attachments_of`` finds in a multipart
    mail (a single part is the text itself: nothing attached), a nameless one named
    ``UNNAMED_FILE``."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    if headers.get_content_maintype() != "multipart":
        return ()  # and no parse to pay
    return tuple(
        (a.filename or UNNAMED_FILE, a.content_type, a.payload) for a in attachments_of(raw)
    )


def files_of(db: Database, submission_ids: Iterable[int]) -> dict[int, tuple[File, ...]]:
    """The stored files of these drafts, in the order they were attached: one indexed query
    per 500 drafts. A draft with none is absent from the answer."""
    wanted = sorted(set(submission_ids))
    found: dict[int, list[File]] = {}
    for at in range(0, len(wanted), 500):  # SQLite's limit on parameters, with room to spare
        chunk = wanted[at : at + 500]
        marks = ", ".join("?" * len(chunk))
        for submission_id, filename, content_type, payload in db.execute(
            "SELECT submission_id, filename, content_type, payload FROM draft_files"
            f" WHERE submission_id IN ({marks}) ORDER BY submission_id, position",
            chunk,
        ):
            found.setdefault(submission_id, []).append((filename, content_type, bytes(payload)))
    return {submission_id: tuple(files) for submission_id, files in found.items()}


def find_by_message_id(db: Database, circle_id: int, message_id: str) -> dict[str, Any] | None:
    rows = list(
        db.query(
            "SELECT * FROM submissions WHERE circle_id = ? AND message_id = ?",
            [circle_id, message_id],
        )
    )
    return rows[0] if rows else None


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
