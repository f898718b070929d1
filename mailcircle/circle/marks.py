"""Marks: small dated notes the circle keeps about an address, to answer with care.

What a mark means is its ``kind``: 'held_noted' (moderators heard of held mail from the
address today), 'capped' (answers to it were capped; moderators told), 'body' (a short
mail's words, to notice one repeated), 'loop' (an automatic-looking mail), 'noted' (it was
told where drafts go), 'talk_held' (moderators heard of held talk posts; address '').
"""

from __future__ import annotations

from datetime import datetime

from sqlite_utils import Database

from mailcircle.clock import iso


def mark(
    db: Database, circle_id: int, email: str, kind: str, at: datetime, value: str = ""
) -> None:
    db.execute(
        "INSERT INTO sender_marks (circle_id, email, kind, value, at) VALUES (?, ?, ?, ?, ?)",
        [circle_id, email, kind, value, iso(at)],
    )


def marked(
    db: Database, circle_id: int, email: str, kind: str, *, since: datetime, value: str = ""
) -> bool:
    """Whether the address has such a mark since ``since`` (with this value, if given)."""
    sql = (
        "SELECT 1 FROM sender_marks WHERE circle_id = ? AND email = ? AND kind = ?"
        " AND at >= ?" + (" AND value = ?" if value else "") + " LIMIT 1"
    )
    params = [circle_id, email, kind, iso(since)] + ([value] if value else [])
    return db.execute(sql, params).fetchone() is not None


def count(db: Database, circle_id: int, email: str, kind: str, since: datetime) -> int:
    row = db.execute(
        "SELECT COUNT(*) FROM sender_marks WHERE circle_id = ? AND email = ? AND kind = ?"
        " AND at >= ?",
        [circle_id, email, kind, iso(since)],
    ).fetchone()
    return int(row[0])
