"""Critiques: a reviewer's reply to an assignment, delivered to the author, and the reply
token that lets author and reviewer write to each other through the circle."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlite_utils import Database

from mailcircle.circle.assigning import DONE
from mailcircle.clock import iso
from mailcircle.errors import Changed
from mailcircle.rows import new_id


def record(
    db: Database,
    assignment: dict[str, Any],
    *,
    spool_id: int,
    message_id: str,
    body: str,
    trimmed: str,
    late: bool,
    received_at: datetime,
    token: str,
    delivered_message_id: str,
) -> int:
    """Keep a critique and mark its assignment done; returns the critique's id. Raises
    Changed when the assignment's status moved since ``assignment`` was read (the scheduler
    passed it on meanwhile): the mail is then read again, against what is true now."""
    marked = db.execute(
        "UPDATE assignments SET status = ? WHERE id = ? AND status = ?",
        [DONE, assignment["id"], assignment["status"]],
    )
    if marked.rowcount != 1:
        raise Changed(f"assignment #{assignment['id']} changed while its critique was read")
    return new_id(
        db.table("critiques").insert(
            {
                "assignment_id": assignment["id"],
                "spool_id": spool_id,
                "message_id": message_id,
                "body": body,
                "trimmed": trimmed,
                "late": int(late),
                "received_at": iso(received_at),
                "token": token,
                "delivered_message_id": delivered_message_id,
            }
        )
    )


def thank(db: Database, critique_id: int, now: datetime) -> None:
    """The author answered the critique (the first answer counts as thanks)."""
    db.execute(
        "UPDATE critiques SET thanked_at = ? WHERE id = ? AND thanked_at IS NULL",
        [iso(now), critique_id],
    )


def token_of_delivered(db: Database, message_ids: tuple[str, ...]) -> str:
    """The reply token of the delivered critique one of these Message-IDs names ('' if
    none): a reply that lost our Reply-To still reaches the right person."""
    for message_id in message_ids[:20]:
        row = db.execute(
            "SELECT token FROM critiques WHERE delivered_message_id = ? AND token IS NOT NULL",
            [message_id],
        ).fetchone()
        if row:
            return str(row[0])
    return ""


def by_token(db: Database, token: str) -> dict[str, Any] | None:
    """The critique a reply token names, with its reviewer, author and draft title."""
    rows = list(
        db.query(
            "SELECT c.*, a.reviewer_id, s.member_id AS author_id, s.title FROM critiques c"
            " JOIN assignments a ON a.id = c.assignment_id"
            " JOIN submissions s ON s.id = a.submission_id WHERE c.token = ?",
            [token],
        )
    )
    return rows[0] if rows else None
