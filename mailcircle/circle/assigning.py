"""One assignment: its row and its mail, and how a reply finds it again."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from email.message import Message
from typing import Any
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from mailcircle import addresses
from mailcircle.circle import mailing, members, submissions
from mailcircle.circle.circles import Circle
from mailcircle.circle.members import Member
from mailcircle.clock import Clock, iso
from mailcircle.outbound import compose
from mailcircle.rows import new_id

OPEN, DONE, EXPIRED, PASSED_ON = "open", "done", "expired", "passed_on"


def get_submission(db: Database, submission_id: int) -> dict[str, Any]:
    return dict(next(iter(db.query("SELECT * FROM submissions WHERE id = ?", [submission_id]))))


def title_of(db: Database, submission_id: int) -> str:
    return str(get_submission(db, submission_id)["title"])


def due_text(moment: datetime, member: Member) -> str:
    try:
        zone = ZoneInfo(member.timezone)
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    local = moment.astimezone(zone)
    return local.strftime(f"%A %-d %B at %H:%M ({member.timezone})")


def draft_attachments(db: Database, submission_id: int) -> tuple[submissions.File, ...]:
    """The files attached to a draft, as stored when it was taken."""
    return submissions.files_of(db, [submission_id]).get(submission_id, ())


def queue_mail(db: Database, clock: Clock, circle: Circle, message: Message, purpose: str) -> None:
    mailing.queue_for_circle(db, circle, message, now=clock.now(), purpose=purpose)


def assignment_mail(
    composer: compose.Composer,
    circle: Circle,
    submission: dict[str, Any],
    reviewer: Member,
    author: Member,
    token: str,
    due: datetime,
    attachments: tuple[tuple[str, str, bytes], ...],
    *,
    backup: bool = False,
) -> Message:
    context = compose.Assignment(
        reviewer_name=reviewer.greeting_name,
        author_name=author.greeting_name,
        circle_name=circle.name,
        title=submission["title"],
        word_count=submission["word_count"],
        asks=submission["asks"],
        draft=submission["body"],
        due=due_text(due, reviewer),
        backup=backup,
        attachments=", ".join(name for name, _, _ in attachments),
    )
    return composer.compose(
        circle,
        "assignment",
        context,
        to=reviewer.email,
        reply_to=circle.action_address(addresses.CRITIQUE, token),
        attachments=attachments,
    )


def assign(
    db: Database,
    clock: Clock,
    composer: compose.Composer,
    circle: Circle,
    submission_id: int,
    reviewer_id: int,
    round_id: int,
    due: datetime,
    *,
    backup_for: int | None = None,
) -> int:
    """Create one assignment with its own reply token and queue its mail."""
    submission = get_submission(db, submission_id)
    reviewer = members.get_by_id(db, reviewer_id)
    author = members.get_by_id(db, submission["member_id"])
    token = secrets.token_hex(12)
    attachments = draft_attachments(db, submission_id)
    message = assignment_mail(
        composer,
        circle,
        submission,
        reviewer,
        author,
        token,
        due,
        attachments,
        backup=backup_for is not None,
    )
    assignment_id = new_id(
        db.table("assignments").insert(
            {
                "round_id": round_id,
                "submission_id": submission_id,
                "reviewer_id": reviewer_id,
                "token": token,
                "status": OPEN,
                "backup_for": backup_for,
                "assigned_at": iso(clock.now()),
                "due_at": iso(due),
                "message_id": message["Message-ID"],
            }
        )
    )
    queue_mail(db, clock, circle, message, "assignment")
    return assignment_id


def moderator_notices(
    db: Database,
    composer: compose.Composer,
    circle: Circle,
    *,
    topic: str,
    details: str,
    reply_to: Callable[[Member], str] = lambda moderator: "",
) -> list[Message]:
    """A notice to each of the circle's moderators, for the caller to queue; ``reply_to``
    gives a moderator's own reply address (e.g. a token that decides a held mail)."""
    return [
        composer.compose(
            circle,
            "moderator_notice",
            compose.ModeratorNotice(
                moderator_name=moderator.greeting_name,
                circle_name=circle.name,
                topic=topic,
                details=details,
            ),
            to=moderator.email,
            reply_to=reply_to(moderator),
        )
        for moderator in members.moderators(db, circle)
    ]


def tell_moderators(
    db: Database,
    clock: Clock,
    composer: compose.Composer,
    circle: Circle,
    *,
    topic: str,
    details: str,
) -> int:
    """Queue a notice to each moderator; returns how many were told."""
    notices = moderator_notices(db, composer, circle, topic=topic, details=details)
    for message in notices:
        queue_mail(db, clock, circle, message, "moderator_notice")
    return len(notices)


def find_by_token(db: Database, token: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM assignments WHERE token = ?", [token]))
    return rows[0] if rows else None


def find_by_message_ids(db: Database, message_ids: tuple[str, ...]) -> dict[str, Any] | None:
    """The assignment whose mail one of these Message-IDs is (for replies that lost the token):
    the one named last. One indexed look-up for the whole chain."""
    wanted = [m for m in dict.fromkeys(message_ids) if m]
    found: dict[str, dict[str, Any]] = {}
    for at in range(0, len(wanted), 500):  # SQLite's limit on parameters, with room to spare
        chunk = wanted[at : at + 500]
        marks = ", ".join("?" * len(chunk))
        for row in db.query(
            f"SELECT * FROM assignments WHERE message_id IN ({marks}) ORDER BY id", chunk
        ):
            found.setdefault(row["message_id"], row)
    for message_id in reversed(wanted):
        if message_id in found:
            return found[message_id]
    return None
