"""Reminders before an assignment is due, and expiry after (backups step in)."""

from __future__ import annotations

from datetime import timedelta

from sqlite_utils import Database

from mailcircle import addresses
from mailcircle.circle import members
from mailcircle.circle.assigning import EXPIRED, OPEN, due_text, get_submission, queue_mail
from mailcircle.circle.backups import find_backups
from mailcircle.circle.circles import Circle
from mailcircle.clock import Clock, iso, parse_iso
from mailcircle.outbound import compose


def send_reminders(db: Database, clock: Clock, composer: compose.Composer, circle: Circle) -> int:
    """Remind reviewers whose open assignment is due within remind_days. Idempotent."""
    now = clock.now()
    horizon = now + timedelta(days=circle.config.remind_days)
    rows = list(
        db.query(
            "SELECT a.* FROM assignments a JOIN rounds r ON r.id = a.round_id"
            " WHERE r.circle_id = ? AND a.status = ? AND a.reminded_at IS NULL"
            " AND a.due_at <= ? AND a.due_at > ? ORDER BY a.id",
            [circle.id, OPEN, iso(horizon), iso(now)],
        )
    )
    for row in rows:
        submission = get_submission(db, row["submission_id"])
        reviewer = members.get_by_id(db, row["reviewer_id"])
        author = members.get_by_id(db, submission["member_id"])
        message = composer.compose(
            circle,
            "reminder",
            compose.Reminder(
                reviewer_name=reviewer.greeting_name,
                author_name=author.greeting_name,
                circle_name=circle.name,
                title=submission["title"],
                due=due_text(parse_iso(row["due_at"]), reviewer),
            ),
            to=reviewer.email,
            reply_to=circle.action_address(addresses.CRITIQUE, row["token"]),
            thread=(row["message_id"],),
        )
        queue_mail(db, clock, circle, message, "reminder")
        db.execute("UPDATE assignments SET reminded_at = ? WHERE id = ?", [iso(now), row["id"]])
    return len(rows)


def expire_overdue(db: Database, clock: Clock, composer: compose.Composer, circle: Circle) -> int:
    """Expire open assignments past their due date; find backups where critiques fall short."""
    now = clock.now()
    rows = list(
        db.query(
            "SELECT a.id, a.submission_id FROM assignments a JOIN rounds r ON r.id = a.round_id"
            " WHERE r.circle_id = ? AND a.status = ? AND a.due_at <= ? ORDER BY a.id",
            [circle.id, OPEN, iso(now)],
        )
    )
    for row in rows:
        db.execute("UPDATE assignments SET status = ? WHERE id = ?", [EXPIRED, row["id"]])
    for row in rows:
        find_backups(db, clock, composer, circle, row["submission_id"], replacing=row["id"])
    return len(rows)
