"""Engagement days: a day the circle sets aside to discuss its writing and how to improve
its prospects. Moderators schedule one; the digest announces it; members answer yes or no
at poets+rsvp-ID@; the day before, those who said yes get the agenda; on the morning of
the day they get a kick-off mail whose replies go to the circle's talk (poets+talk@), and
what they write that day is part of the day (summed up in the next digest). Moderators add
agenda items by mail (poets+agenda@) or with `mailcircle engagement agenda`."""

from __future__ import annotations

import secrets
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlite_utils import Database

from mailcircle.circle import mailing, members, talk
from mailcircle.circle.circles import Circle
from mailcircle.clock import Clock, iso
from mailcircle.db import transaction
from mailcircle.errors import MailcircleError
from mailcircle.outbound import compose
from mailcircle.rows import new_id


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
        return new_id(
            db.table("engagement_days").insert(
                {
                    "circle_id": circle.id,
                    "day": when.isoformat(),
                    "topic": topic.strip(),
                    "created_at": iso(clock.now()),
                    "agenda_sent_at": None,
                }
            )
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
        drafts = _last_round_drafts(db, circle)
        when = date.fromisoformat(day["day"]).strftime("%A %-d %B")
        for member in _coming(db, day):
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
            mailing.queue_for_circle(db, circle, message, now=clock.now(), purpose="agenda")
            sent += 1
        db.execute(
            "UPDATE engagement_days SET agenda_sent_at = ? WHERE id = ?",
            [iso(clock.now()), day["id"]],
        )
    return sent


def _coming(db: Database, day: dict[str, Any]) -> list[members.Member]:
    """Those who said yes to an engagement day and are still in the circle."""
    said_yes = db.execute(
        "SELECT member_id FROM engagement_rsvps WHERE engagement_id = ? AND answer = 'yes'"
        " ORDER BY member_id",
        [day["id"]],
    ).fetchall()
    found = (members.get_by_id(db, member_id) for (member_id,) in said_yes)
    return [member for member in found if member.status != members.LEFT]


def _last_round_drafts(db: Database, circle: Circle) -> list[str]:
    """One line per draft of the latest round with assignments, with its author's questions."""
    return [
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


# --- the day itself: agenda items, the kick-off ------------------------------------------

KICKOFF_TIME = time(8, 0)  # on the day, in the circle's time zone
MAX_ITEM = 300  # characters in one agenda item


def add_item(db: Database, clock: Clock, day: dict[str, Any], item: str, added_by: str) -> str:
    """Put an item on an engagement day's agenda; returns it as stored (one line)."""
    text = " ".join(item.split())
    if not text:
        raise MailcircleError("an agenda item needs some words, e.g. 'Where to send prose poems'")
    if len(text) > MAX_ITEM:
        raise MailcircleError(f"an agenda item can be at most {MAX_ITEM} characters long")
    db.execute(
        "INSERT INTO engagement_agenda (engagement_id, item, added_by, created_at)"
        " VALUES (?, ?, ?, ?)",
        [day["id"], text, added_by, iso(clock.now())],
    )
    return text


def find_day(db: Database, circle: Circle, day: str) -> dict[str, Any]:
    """The circle's engagement day on DAY (YYYY-MM-DD); a clear error when there is none."""
    rows = list(
        db.query(
            "SELECT * FROM engagement_days WHERE circle_id = ? AND day = ? ORDER BY id LIMIT 1",
            [circle.id, day.strip()],
        )
    )
    if not rows:
        raise MailcircleError(
            f"{circle.name} has no engagement day on {day} (see `mailcircle engagement list`)"
        )
    return dict(rows[0])


def agenda_items(db: Database, engagement_id: int) -> list[str]:
    return [
        f"  - {item}"
        for (item,) in db.execute(
            "SELECT item FROM engagement_agenda WHERE engagement_id = ? ORDER BY id",
            [engagement_id],
        ).fetchall()
    ]


def send_kickoffs(db: Database, clock: Clock, composer: compose.Composer, circle: Circle) -> int:
    """On the morning of an engagement day, mail everyone who said yes the agenda and the
    talk address. All copies share one Message-ID, so the day's posts thread under it.
    Idempotent; a day missed entirely (the service was down all day) is not sent late."""
    now = clock.now()
    local = now.astimezone(circle.config.zone)
    if local.time() < KICKOFF_TIME:
        return 0
    sent = 0
    for day in list(
        db.query(
            "SELECT * FROM engagement_days WHERE circle_id = ? AND day = ?"
            " AND kickoff_sent_at IS NULL",
            [circle.id, local.date().isoformat()],
        )
    ):
        message_id = f"<engagement-{day['id']}.{secrets.token_hex(8)}@{circle.domain}>"
        context = {
            "circle_name": circle.name,
            "day": date.fromisoformat(day["day"]).strftime("%A %-d %B"),
            "topic": day["topic"],
            "agenda": "\n".join(agenda_items(db, day["id"])),
            "drafts": "\n".join(_last_round_drafts(db, circle)),
            "talk_address": talk.address(circle),
        }
        for member in _coming(db, day):
            message = composer.compose(
                circle,
                "engagement_kickoff",
                compose.EngagementKickoff(member_name=member.greeting_name, **context),
                to=member.email,
                reply_to=talk.address(circle),
            )
            talk.as_list_mail(message, circle)
            talk.keep_thread(message, message_id, "", ())
            if mailing.queue_for_circle(db, circle, message, now=now, purpose="engagement_kickoff"):
                sent += 1
        db.execute(
            "UPDATE engagement_days SET kickoff_sent_at = ?, kickoff_message_id = ? WHERE id = ?",
            [iso(now), message_id, day["id"]],
        )
    return sent


def listing(db: Database, circle: Circle) -> list[dict[str, Any]]:
    """The circle's engagement days by date: day, topic and how many said yes."""
    return [
        dict(row)
        for row in db.query(
            "SELECT e.day, e.topic, (SELECT COUNT(*) FROM engagement_rsvps r WHERE"
            " r.engagement_id = e.id AND r.answer = 'yes') AS yes FROM engagement_days e"
            " WHERE e.circle_id = ? ORDER BY e.day",
            [circle.id],
        )
    ]
