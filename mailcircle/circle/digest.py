"""The weekly digest: one per member, at the circle's digest day and time in the member's
own time zone. ``digest_context`` reads what happened; ``send_due_digests`` is the
scheduler's job (idempotent: one digest per member per slot; after downtime it catches up
within a day, and skips a digest that would arrive later than that).
A digest never quotes a draft: titles, authors and word counts only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from mailcircle.circle import assignments, engagement, members, rounds, talk, talk_week
from mailcircle.circle.assign import held_back_members
from mailcircle.circle.circles import Circle
from mailcircle.circle.members import Member
from mailcircle.circle.settings import WEEKDAYS
from mailcircle.clock import Clock, iso, parse_iso
from mailcircle.outbound import compose, outbox

WEEKLY, OFF = "weekly", "off"
STALE_AFTER = timedelta(hours=24)  # a digest missed by more than this is skipped, not sent late


def latest_slot(now: datetime, circle: Circle, member: Member) -> datetime:
    """The member's most recent digest time at or before ``now`` (UTC)."""
    zone = _zone(member)
    config = circle.config
    local = now.astimezone(zone)
    back = (local.weekday() - WEEKDAYS.index(config.digest_day)) % 7
    at = datetime.strptime(config.digest_time, "%H:%M").time()
    slot = datetime.combine(local.date() - timedelta(days=back), at, tzinfo=zone)
    if slot > local:
        slot -= timedelta(days=7)
    return slot.astimezone(UTC)


LIST_LIMIT = 40  # lines per section; a big circle's digest says "and N more"
NAMES_LIMIT = 20  # names in one sentence ("Ann, Ben and 312 others")


class CircleWeek:
    """Everything a digest says, read from the database once per run, not per member: the
    circle's week, every member's standing and every open assignment. ``digest_context``
    is then a pure function of this and the member."""

    def __init__(self, db: Database, circle: Circle, now: datetime) -> None:
        self.circle = assignments.settled(circle)
        self.now = now
        week_ago = iso(now - timedelta(days=7))
        self.names = {m.id: m.greeting_name for m in members.list_members(db, circle)}
        name = self.names.get
        latest = db.execute(
            "SELECT id FROM rounds r WHERE circle_id = ? AND EXISTS"
            " (SELECT 1 FROM assignments a WHERE a.round_id = r.id)"
            " ORDER BY number DESC LIMIT 1",
            [circle.id],
        ).fetchone()
        readers: dict[int, list[str]] = {}
        drafts: list[tuple[int, str, int, int]] = []
        if latest:
            for sid, reviewer in db.execute(
                "SELECT submission_id, reviewer_id FROM assignments WHERE round_id = ? ORDER BY id",
                [latest[0]],
            ):
                readers.setdefault(sid, []).append(name(reviewer, "a former member"))
            drafts = db.execute(
                "SELECT s.id, s.title, s.word_count, s.member_id FROM submissions s WHERE s.id IN"
                " (SELECT submission_id FROM assignments WHERE round_id = ?) ORDER BY s.id",
                [latest[0]],
            ).fetchall()
        self.drafts_out = _limited(
            [
                f'  "{title}" by {name(author, "a former member")}, {words} words,'
                f" read by {_and(readers.get(sid, []))}"
                for sid, title, words, author in drafts[: LIST_LIMIT + 1]
            ],
            len(drafts),
        )
        delivered = db.execute(
            "SELECT a.reviewer_id, s.member_id, s.title, c.late FROM critiques c"
            " JOIN assignments a ON a.id = c.assignment_id"
            " JOIN submissions s ON s.id = a.submission_id"
            " WHERE s.circle_id = ? AND c.received_at >= ? ORDER BY c.id",
            [circle.id, week_ago],
        ).fetchall()
        self.delivered = _limited(
            [
                f'  {name(reviewer, "someone")} on {name(author, "someone")}\'s "{title}"'
                + (" (late)" if late else "")
                for reviewer, author, title, late in delivered[: LIST_LIMIT + 1]
            ],
            len(delivered),
        )
        self.history = assignments.history(db, circle)
        self.held_back = held_back_members(self.history, assignments.round_settings(circle))
        self.given: dict[int, int] = {}
        self.received: dict[int, int] = {}
        for past in self.history:
            if past.critiqued:
                self.given[past.reviewer_id] = self.given.get(past.reviewer_id, 0) + 1
                self.received[past.author_id] = self.received.get(past.author_id, 0) + 1
        self.thanks = dict(
            db.execute(
                "SELECT a.reviewer_id, COUNT(*) FROM critiques c"
                " JOIN assignments a ON a.id = c.assignment_id JOIN rounds r ON r.id = a.round_id"
                " WHERE r.circle_id = ? AND c.thanked_at >= ? GROUP BY a.reviewer_id",
                [circle.id, week_ago],
            ).fetchall()
        )
        generous = sorted(
            {
                self.names[r]
                for (r,) in db.execute(
                    "SELECT a.reviewer_id FROM critiques c"
                    " JOIN assignments a ON a.id = c.assignment_id"
                    " JOIN rounds r ON r.id = a.round_id"
                    " WHERE r.circle_id = ? AND a.backup_for IS NOT NULL AND c.received_at >= ?",
                    [circle.id, week_ago],
                )
                if r in self.names
            }
        )
        self.generous = _and(generous) if generous else ""
        # Every open assignment of the circle, by reviewer (open work is this round's, so
        # bounded by the round, whatever the circle's age).
        self.open_work: dict[int, list[tuple[str, int, str]]] = {}
        for reviewer, title, author, due_at in db.execute(
            "SELECT a.reviewer_id, s.title, s.member_id, a.due_at FROM assignments a"
            " JOIN submissions s ON s.id = a.submission_id"
            " WHERE a.status = 'open' AND s.circle_id = ? ORDER BY a.due_at, a.id",
            [circle.id],
        ):
            self.open_work.setdefault(reviewer, []).append((title, author, due_at))
        self.engagement = engagement.next_day(db, circle, now)
        self.talk = talk_week.TalkWeek(db, circle, now, self.names)  # conversations, milestones
        self._by_zone: dict[str, tuple[str, str]] = {}

    def dates(self, member: Member) -> tuple[str, str]:
        """(the week, the next round) in words, in the member's zone: worked out per zone."""
        if member.timezone not in self._by_zone:
            zone, config = _zone(member), self.circle.config
            self._by_zone[member.timezone] = (
                f"the week to {self.now.astimezone(zone).strftime('%A %-d %B')}",
                rounds.next_round_start(self.now, config)
                .astimezone(zone)
                .strftime(f"%A %-d %B at %H:%M ({member.timezone})"),
            )
        return self._by_zone[member.timezone]


def digest_context(week: CircleWeek, member: Member) -> compose.Digest:
    """What one member's digest says: a pure function of the week's rows and the member."""
    circle, config = week.circle, week.circle.config
    work = week.open_work.get(member.id, [])
    mine = _limited(
        [
            f'  "{title}" by {week.names.get(author, "someone")}, due '
            + assignments.due_text(parse_iso(due_at), member)
            for title, author, due_at in work[: LIST_LIMIT + 1]
        ],
        len(work),
    )
    upcoming = week.engagement
    week_words, next_round = week.dates(member)
    return compose.Digest(
        member_name=member.greeting_name,
        circle_name=circle.name,
        week=week_words,
        drafts_out=week.drafts_out,
        critiques_delivered=week.delivered,
        your_assignments=mine,
        given=week.given.get(member.id, 0),
        received=week.received.get(member.id, 0),
        held_back=member.id in week.held_back,
        participation_needed=config.participation_needed,
        participation_window=config.participation_window,
        thanks_received=int(week.thanks.get(member.id, 0)),
        generous=week.generous,
        next_round=next_round,
        engagement=f"{upcoming['when']}, {upcoming['topic']}" if upcoming else "",
        rsvp_address=circle.action_address("rsvp", str(upcoming["id"])) if upcoming else "",
        pause_address=circle.action_address("pause"),
        leave_address=circle.action_address("leave"),
        digest_off_address=circle.action_address("digest", "off"),
        conversations=week.talk.conversations(member),
        milestones=week.talk.milestones,
        engagement_day=week.talk.engagement_day,
        talk_address=talk.address(circle),
    )


def send_due_digests(db: Database, clock: Clock, composer: compose.Composer, circle: Circle) -> int:
    """Queue the digest of every member whose digest time has come. Idempotent."""
    circle = assignments.settled(circle)
    now = clock.now()
    queued: list[outbox.Prepared] = []
    marks: list[tuple[int, str, str]] = []  # the digests table's rows: none is sent twice
    week: CircleWeek | None = None  # worked out when the first digest is due
    # What each member's digest depends on, read once for the whole circle.
    details = {
        row[0]: row[1:]
        for row in db.execute(
            "SELECT id, joined_at, digest, bounce_token FROM members WHERE circle_id = ?",
            [circle.id],
        )
    }
    done = set(
        db.execute(
            "SELECT member_id, slot FROM digests WHERE slot >= ?", [iso(now - timedelta(days=8))]
        ).fetchall()
    )
    slots: dict[str, datetime] = {}
    reply_to = circle.action_address("digest")
    for member in members.list_members(db, circle):
        if member.status not in (members.ACTIVE, members.PAUSED):
            continue
        joined_at, setting, bounce_token = details[member.id]
        if setting == OFF:
            continue
        if member.timezone not in slots:
            slots[member.timezone] = latest_slot(now, circle, member)
        slot = slots[member.timezone]
        if slot < parse_iso(joined_at) or now - slot > STALE_AFTER:
            continue  # not a member yet then, or a digest that would arrive days late
        if (member.id, iso(slot)) in done:
            continue
        week = week or CircleWeek(db, circle, now)
        message = composer.compose(
            circle,
            "digest",
            digest_context(week, member),
            to=member.email,
            reply_to=reply_to,
            precedence="list",
        )
        mail_from = (
            circle.action_address("bounce", bounce_token)
            if bounce_token
            else members.bounce_address(db, circle, member.email)
        )
        queued.append(
            outbox.prepare(
                message,
                circle_id=circle.id,
                purpose="digest",
                mail_from=mail_from,
                rcpt_to=member.email,
            )
        )
        marks.append((member.id, iso(slot), iso(now)))
    outbox.queue_prepared(db, queued, now=now)
    db.conn.executemany("INSERT INTO digests (member_id, slot, sent_at) VALUES (?, ?, ?)", marks)
    return len(marks)


def set_digest(db: Database, member: Member, value: str) -> str:
    """Set the member's digest (WEEKLY or OFF); returns what it was."""
    row = db.execute("SELECT digest FROM members WHERE id = ?", [member.id]).fetchone()
    db.execute("UPDATE members SET digest = ? WHERE id = ?", [value, member.id])
    return str(row[0]) if row else ""


def _zone(member: Member) -> ZoneInfo:
    try:
        return ZoneInfo(member.timezone)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def _limited(lines: list[str], total: int | None = None) -> str:
    """At most LIST_LIMIT lines, then how many more there are (of ``total``, if given)."""
    total = len(lines) if total is None else total
    if total > LIST_LIMIT:
        lines = [*lines[:LIST_LIMIT], f"  ... and {total - LIST_LIMIT} more"]
    return "\n".join(lines)


def _and(names: list[str]) -> str:
    if not names:
        return "nobody yet"
    if len(names) > NAMES_LIMIT:
        return ", ".join(names[:NAMES_LIMIT]) + f" and {len(names) - NAMES_LIMIT} others"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
