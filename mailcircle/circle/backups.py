"""Backups: an assignment that lapses or is passed on goes to another active member."""

from __future__ import annotations

from datetime import timedelta

from sqlite_utils import Database

from mailcircle.circle import members
from mailcircle.circle.assigning import OPEN, PASSED_ON, assign, get_submission, tell_moderators
from mailcircle.circle.circles import Circle
from mailcircle.circle.members import Member
from mailcircle.clock import Clock
from mailcircle.outbound import compose


def pass_on(
    db: Database, clock: Clock, composer: compose.Composer, circle: Circle, member: Member
) -> int:
    """Hand a member's open assignments to backups (they are away)."""
    rows = list(
        db.query(
            "SELECT id, submission_id FROM assignments WHERE reviewer_id = ? AND status = ?",
            [member.id, OPEN],
        )
    )
    for row in rows:
        db.execute("UPDATE assignments SET status = ? WHERE id = ?", [PASSED_ON, row["id"]])
        find_backups(db, clock, composer, circle, row["submission_id"], replacing=row["id"])
    return len(rows)


def find_backups(
    db: Database,
    clock: Clock,
    composer: compose.Composer,
    circle: Circle,
    submission_id: int,
    *,
    replacing: int,
) -> int:
    """Assign backups until the draft can still reach min_reviews critiques."""
    counts = db.execute(
        "SELECT SUM(status = ?), SUM(EXISTS (SELECT 1 FROM critiques c"
        " WHERE c.assignment_id = assignments.id)) FROM assignments WHERE submission_id = ?",
        [OPEN, submission_id],
    ).fetchone()
    open_now, critiqued = int(counts[0] or 0), int(counts[1] or 0)
    missing = circle.config.min_reviews - critiqued - open_now
    if missing <= 0:
        return 0
    submission = get_submission(db, submission_id)
    candidates = list(
        db.execute(
            """
        SELECT m.id FROM members m
        WHERE m.circle_id = ? AND m.status = ? AND m.id != ?
          AND m.id NOT IN (SELECT reviewer_id FROM assignments WHERE submission_id = ?)
        ORDER BY (SELECT COUNT(*) FROM assignments a WHERE a.reviewer_id = m.id
                  AND a.status = ?), m.id
        LIMIT ?
        """,
            [circle.id, members.ACTIVE, submission["member_id"], submission_id, OPEN, missing],
        )
    )
    round_id = db.execute("SELECT round_id FROM assignments WHERE id = ?", [replacing]).fetchone()[
        0
    ]
    due = clock.now() + timedelta(days=circle.config.backup_days)
    for (reviewer_id,) in candidates:
        assign(
            db,
            clock,
            composer,
            circle,
            submission_id,
            reviewer_id,
            round_id,
            due,
            backup_for=replacing,
        )
    if len(candidates) < missing:
        tell_moderators(
            db,
            clock,
            composer,
            circle,
            topic=f'No backup reviewer for "{submission["title"]}"',
            details=f'An assignment for "{submission["title"]}" lapsed and no other active '
            "member is free to step in. The draft may get fewer critiques than the circle "
            "wants; you could review it yourselves or ask a paused member back.",
        )
    return len(candidates)
