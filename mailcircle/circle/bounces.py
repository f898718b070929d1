"""Bounce scores: hard bounces count 1, soft ones 0.5, for ``bounce_days`` days; at the
circle's ``bounce_score_limit`` mail to the member pauses and the moderators are told.
A full mailbox is recorded but never counts: the address exists, it just needs a clear-out.
"""

from __future__ import annotations

from datetime import timedelta

from sqlite_utils import Database

from mailcircle.circle import assignments, circles, members
from mailcircle.circle.circles import Circle
from mailcircle.circle.members import Member
from mailcircle.clock import Clock, iso
from mailcircle.outbound.compose import Composer

MAILBOX_FULL = ("4.2.2", "5.2.2")
WEIGHT = {"hard": 1.0, "soft": 0.5, "mailbox_full": 0.0}
BOUNCING = "bouncing"  # a member's status while mail to them is paused


def kind_of(status: str, *, hard: bool) -> str:
    if status in MAILBOX_FULL:
        return "mailbox_full"
    return "hard" if hard else "soft"


def score(db: Database, clock: Clock, circle: Circle, member: Member) -> float:
    since = iso(clock.now() - timedelta(days=circle.config.bounce_days))
    rows = db.execute(
        "SELECT kind FROM bounces WHERE member_id = ? AND received_at >= ?", [member.id, since]
    ).fetchall()
    return sum(WEIGHT.get(kind, 0.5) for (kind,) in rows)


def record(
    db: Database,
    clock: Clock,
    composer: Composer,
    circle: Circle,
    member: Member,
    spool_id: int | None,
    status: str,
    *,
    hard: bool,
    outbox_id: int | None = None,
) -> str:
    """Record one bounce; pause delivery to the member once their score reaches the limit."""
    kind = kind_of(status, hard=hard)
    db.table("bounces").insert(
        {
            "member_id": member.id,
            "spool_id": spool_id,
            "outbox_id": outbox_id,
            "kind": kind,
            "status": status,
            "received_at": iso(clock.now()),
        }
    )
    total = score(db, clock, circle, member)
    outcome = (
        f"a {kind.replace('_', ' ')} bounce ({status or 'no status'}) recorded for {member.email}"
    )
    if member.status == members.ACTIVE and total >= circle.config.bounce_score_limit:
        members.set_status(db, member.id, BOUNCING)
        passed = assignments.pass_on(db, clock, composer, circle, member)
        assignments.tell_moderators(
            db,
            clock,
            composer,
            circle,
            topic=f"Mail to {member.email} is bouncing",
            details=f"Mail to {member.email} has bounced (score {total:g}, limit "
            f"{circle.config.bounce_score_limit}), so the circle has stopped sending to them "
            f"and passed {passed} open assignment(s) on. When their mailbox works again, "
            "they (or you) can resume them with +resume.",
        )
        outcome += f"; score {total:g}: delivery paused, moderators told"
    return outcome


def refused_by_relay(
    db: Database,
    clock: Clock,
    composer: Composer,
    circle_id: int | None,
    rcpt_to: str,
    outbox_id: int,
    status: str,
) -> str:
    """The relay refused a member's address with a 5xx in the SMTP dialogue: a hard bounce
    (the answer is the relay's own, so no VERP token is needed to trust it). Returns what
    was recorded, or '' when the address is not a member's."""
    if circle_id is None:
        return ""
    circle = circles.get(db, "", row_id=circle_id)
    member = members.find(db, circle, rcpt_to)
    if member is None:
        return ""
    return record(db, clock, composer, circle, member, None, status, hard=True, outbox_id=outbox_id)
