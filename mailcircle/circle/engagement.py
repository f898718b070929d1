"""Engagement days: a day the circle sets aside to discuss its writing and how to improve
its prospects. Moderators schedule one; the digest announces it; members answer yes or no
at poets+rsvp-ID@; the day before, those who said yes get the agenda."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlite_utils import Database

from mailcircle.circle import members
from mailcircle.circle.circles import Circle
from mailcircle.clock import Clock, iso
from mailcircle.db import transaction
from mailcircle.errors import MailcircleError
from mailcircle.outbound import compose, outbox


def add(db: Database, clock: Clock, circle: Circle, day: str, topic: str) -> int:
    try:
        when = date.fromisoformat(day)
    except ValueError:
        raise MailcircleError(f"the date must look like 2026-04-18, not {day!r}") from None
    if when <= clock.now().astimezone(circle.config.zone).date():
        raise MailcircleError(f"{day} is not in the future")
    if not topic.strip():
        raise MailcircleError("an engagement day needs a topic, e.g. --topic 'Finding readers'")
    with transaction(db):
        return int(
            db["engagement_days"]
            .insert(
                {
                    "circle_id": circle.id,
                    "day": when.isoformat(),
                    "topic": topic.strip(),
                    "created_at": iso(clock.now()),
                    "agenda_sent_at": None,
                }
            )
            .last_pk
        )


def next_day(db: Database, circle: Circle, now: datetime) -> dict[str, Any] | None:
    today = now.astimezone(circle.config.zone).date().isoformat()
    rows = list(
        db.query(
            "SELECT * FROM engagement_days WHERE circle_id = ? AND day >= ? ORDER BY day LIMIT 1",
            [circle.id, today],
        )
    )
    if not rows:
        return None
    row = dict(rows[0])
    row["when"] = date.fromisoformat(row["day"]).strftime("%A %-d %B %Y")
    return row


def get(db: Database, circle: Circle, engagement_id: str) -> dict[str, Any] | None:
    if not engagement_id.isdigit():
        return None
    rows = list(
        db.query(
            "SELECT * FROM engagement_days WHERE id = ? AND circle_id = ?",
            [int(engagement_id), circle.id],
        )
    )
    return dict(rows[0]) if rows else None


def rsvp(db: Database, clock: Clock, engagement_id: int, member_id: int, coming: bool) -> None:
    db.execute(
        "INSERT INTO engagement_rsvps (engagement_id, member_id, answer, answered_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (engagement_id, member_id) DO UPDATE SET"
        " answer = excluded.answer, answered_at = excluded.answered_at",
        [engagement_id, member_id, "yes" if coming else "no", iso(clock.now())],
    )


def send_agendas(db: Database, clock: Clock, composer: compose.Composer, circle: Circle) -> int:
    """The day before an engagement day, send its agenda to everyone who said yes."""
    tomorrow = (clock.now().astimezone(circle.config.zone).date() + timedelta(days=1)).isoformat()
    sent = 0
    for day in list(
        db.query(
            "SELECT * FROM engagement_days WHERE circle_id = ? AND day <= ? AND day >= ?"
            " AND agenda_sent_at IS NULL",
            [circle.id, tomorrow, clock.now().date().isoformat()],
        )
    ):
        drafts = [
            f'  "{row["title"]}" by {row["author"]}'
            + (f"\n     asks: {row['asks']}" if row["asks"] else "")
            for row in db.query(
                "SELECT s.title, s.asks, COALESCE(NULLIF(m.name, ''), ?) AS author"
                " FROM submissions s JOIN members m ON m.id = s.member_id"
                " WHERE s.circle_id = ? AND s.id IN (SELECT submission_id FROM assignments a"
                " JOIN rounds r ON r.id = a.round_id WHERE r.circle_id = ? AND r.number ="
                " (SELECT MAX(r2.number) FROM rounds r2 WHERE r2.circle_id = ? AND EXISTS"
                " (SELECT 1 FROM assignments a2 WHERE a2.round_id = r2.id))) ORDER BY s.id",
                [f"a member of {circle.name}", circle.id, circle.id, circle.id],
            )
        ]
        when = date.fromisoformat(day["day"]).strftime("%A %-d %B")
        for (member_id,) in db.execute(
            "SELECT member_id FROM engagement_rsvps WHERE engagement_id = ? AND answer = 'yes'",
            [day["id"]],
        ).fetchall():
            member = members.get_by_id(db, member_id)
            if member.status == members.LEFT:
                continue
            message = composer.compose(
                circle,
                "agenda",
                compose.Agenda(
                    member_name=member.greeting_name,
                    circle_name=circle.name,
                    day=when,
                    topic=day["topic"],
                    drafts="\n".join(drafts),
                ),
                to=member.email,
            )
            outbox.queue_for_circle(db, circle, message, now=clock.now(), purpose="agenda")
            sent += 1
        db.execute(
            "UPDATE engagement_days SET agenda_sent_at = ? WHERE id = ?",
            [iso(clock.now()), day["id"]],
        )
    return sent
