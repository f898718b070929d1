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

from mailcircle.circle import assignments, engagement, members, rounds
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


def digest_context(db: Database, circle: Circle, member: Member, now: datetime) -> compose.Digest:
    week_ago = iso(now - timedelta(days=7))
    names = {m.id: m.greeting_name for m in members.list_members(db, circle)}
    latest = db.execute(
        "SELECT id FROM rounds r WHERE circle_id = ? AND EXISTS"
        " (SELECT 1 FROM assignments a WHERE a.round_id = r.id) ORDER BY number DESC LIMIT 1",
        [circle.id],
    ).fetchone()
    drafts_out = []
    if latest:
        for row in db.query(
            "SELECT s.id, s.title, s.word_count, s.member_id FROM submissions s WHERE s.id IN"
            " (SELECT submission_id FROM assignments WHERE round_id = ?) ORDER BY s.id",
            [latest[0]],
        ):
            readers = [
                names.get(r, "a former member")
                for (r,) in db.execute(
                    "SELECT reviewer_id FROM assignments WHERE submission_id = ? ORDER BY id",
                    [row["id"]],
                )
            ]
            drafts_out.append(
                f'  "{row["title"]}" by {names.get(row["member_id"], "a former member")},'
                f" {row['word_count']} words, read by {_and(readers)}"
            )
    delivered = [
        f"  {names.get(row['reviewer_id'], 'someone')} on {names.get(row['author_id'], 'someone')}"
        f'\'s "{row["title"]}"{" (late)" if row["late"] else ""}'
        for row in db.query(
            "SELECT a.reviewer_id, s.member_id AS author_id, s.title, c.late FROM critiques c"
            " JOIN assignments a ON a.id = c.assignment_id"
            " JOIN submissions s ON s.id = a.submission_id"
            " WHERE s.circle_id = ? AND c.received_at >= ? ORDER BY c.id",
            [circle.id, week_ago],
        )
    ]
    mine = [
        f'  "{row["title"]}" by {names.get(row["author_id"], "someone")}, due '
        + assignments.due_text(parse_iso(row["due_at"]), member)
        for row in db.query(
            "SELECT s.title, s.member_id AS author_id, a.due_at FROM assignments a"
            " JOIN submissions s ON s.id = a.submission_id"
            " WHERE a.reviewer_id = ? AND a.status = 'open' ORDER BY a.due_at",
            [member.id],
        )
    ]
    history = assignments.history(db, circle)
    given = sum(1 for p in history if p.reviewer_id == member.id and p.critiqued)
    received = sum(1 for p in history if p.author_id == member.id and p.critiqued)
    thanks = db.execute(
        "SELECT COUNT(*) FROM critiques c JOIN assignments a ON a.id = c.assignment_id"
        " WHERE a.reviewer_id = ? AND c.thanked_at >= ?",
        [member.id, week_ago],
    ).fetchone()[0]
    generous = sorted(
        {
            names[r]
            for (r,) in db.execute(
                "SELECT a.reviewer_id FROM assignments a JOIN critiques c ON c.assignment_id = a.id"
                " JOIN rounds r ON r.id = a.round_id WHERE r.circle_id = ?"
                " AND a.backup_for IS NOT NULL AND c.received_at >= ?",
                [circle.id, week_ago],
            )
            if r in names
        }
    )
    config = circle.config
    upcoming = engagement.next_day(db, circle, now)
    return compose.Digest(
        member_name=member.greeting_name,
        circle_name=circle.name,
        week=f"the week to {now.astimezone(_zone(member)).strftime('%A %-d %B')}",
        drafts_out="\n".join(drafts_out),
        critiques_delivered="\n".join(delivered),
        your_assignments="\n".join(mine),
        given=given,
        received=received,
        held_back=member.id in held_back_members(history, assignments.round_settings(circle)),
        participation_needed=config.participation_needed,
        participation_window=config.participation_window,
        thanks_received=int(thanks),
        generous=_and(generous) if generous else "",
        next_round=rounds.next_round_start(now, config)
        .astimezone(_zone(member))
        .strftime(f"%A %-d %B at %H:%M ({member.timezone})"),
        engagement=f"{upcoming['when']}, {upcoming['topic']}" if upcoming else "",
        rsvp_address=circle.action_address("rsvp", str(upcoming["id"])) if upcoming else "",
        pause_address=circle.action_address("pause"),
        leave_address=circle.action_address("leave"),
        digest_off_address=circle.action_address("digest", "off"),
    )


def send_due_digests(db: Database, clock: Clock, composer: compose.Composer, circle: Circle) -> int:
    """Queue the digest of every member whose digest time has come. Idempotent."""
    now = clock.now()
    sent = 0
    for member in members.list_members(db, circle):
        if member.status != members.ACTIVE and member.status != members.PAUSED:
            continue
        if _digest_setting(db, member) == OFF:
            continue
        slot = latest_slot(now, circle, member)
        joined = db.execute("SELECT joined_at FROM members WHERE id = ?", [member.id]).fetchone()
        if slot < parse_iso(joined[0]) or now - slot > STALE_AFTER:
            continue  # not a member yet then, or a digest that would arrive days late
        if db.execute(
            "SELECT 1 FROM digests WHERE member_id = ? AND slot = ?", [member.id, iso(slot)]
        ).fetchone():
            continue
        message = composer.compose(
            circle,
            "digest",
            digest_context(db, circle, member, now),
            to=member.email,
            reply_to=circle.action_address("digest"),
            precedence="list",
        )
        outbox.queue_for_circle(db, circle, message, now=now, purpose="digest")
        db["digests"].insert({"member_id": member.id, "slot": iso(slot), "sent_at": iso(now)})
        sent += 1
    return sent


def set_digest(db: Database, member: Member, value: str) -> None:
    db.execute("UPDATE members SET digest = ? WHERE id = ?", [value, member.id])


def _digest_setting(db: Database, member: Member) -> str:
    return str(db.execute("SELECT digest FROM members WHERE id = ?", [member.id]).fetchone()[0])


def _zone(member: Member) -> ZoneInfo:
    try:
        return ZoneInfo(member.timezone)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def _and(names: list[str]) -> str:
    if not names:
        return "nobody yet"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
