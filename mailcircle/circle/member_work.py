"""What one member has in hand now: the critiques they owe and their drafts in the queue
(the +status answer)."""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from mailcircle.circle.circles import Circle


def open_assignments(db: Database, circle: Circle, member_id: int) -> list[dict[str, Any]]:
    """The drafts the member is to critique, soonest due first: title, author, due_at."""
    return list(
        db.query(
            "SELECT s.title, COALESCE(NULLIF(m.name, ''), ?) AS author, a.due_at"
            " FROM assignments a JOIN submissions s ON s.id = a.submission_id"
            " JOIN members m ON m.id = s.member_id"
            " WHERE a.reviewer_id = ? AND +a.status = 'open' ORDER BY a.due_at",  # by reviewer
            [f"a member of {circle.name}", member_id],
        )
    )


def queued_drafts(db: Database, member_id: int) -> list[dict[str, Any]]:
    """The member's drafts waiting for a round, oldest first: title, word_count."""
    return list(
        db.query(
            "SELECT title, word_count FROM submissions"
            " WHERE member_id = ? AND status = 'queued' ORDER BY id",
            [member_id],
        )
    )
