"""Held talk posts (from strangers, or unproven members): the moderators are told, at most
every few hours, and a stranger once a week (a scheduler job, from the spool's state)."""

from __future__ import annotations

import email
import re
from datetime import timedelta
from email.header import decode_header, make_header

from sqlite_utils import Database

from mailcircle import addresses
from mailcircle.circle import assignments, mailing, marks, members
from mailcircle.circle.circles import Circle
from mailcircle.circle.talk import HELD_PREFIX
from mailcircle.clock import Clock, iso
from mailcircle.outbound import compose


def tell_about_held(db: Database, clock: Clock, composer: compose.Composer, circle: Circle) -> int:
    """Tell moderators about talk posts held because their sender is not a member (once
    each), and the sender that their post waits (at most once a week). Idempotent."""
    told = 0
    held = db.execute(
        "SELECT s.id, s.raw FROM spool s WHERE s.status = 'held' AND s.circle_id = ?"
        " AND s.outcome LIKE ? AND NOT EXISTS"
        " (SELECT 1 FROM talk_held_notices n WHERE n.spool_id = s.id) ORDER BY s.id",
        [circle.id, HELD_PREFIX + "%"],
    ).fetchall()
    if held and _may_tell_moderators(db, clock, circle):
        # One notice for all that waits (at most every few hours), never one per post:
        # a flood of posts from strangers must not become a flood to the moderators.
        lines = []
        for spool_id, raw in held[:10]:
            from_addr, subject, _ = _headers_of(raw)
            lines.append(f'  #{spool_id} from {from_addr or "an unknown sender"}: "{subject}"')
        more = f"\n  ... and {len(held) - 10} more" if len(held) > 10 else ""
        told += assignments.tell_moderators(
            db,
            clock,
            composer,
            circle,
            topic=f"{len(held)} talk post(s) from non-members held",
            details=(
                "These were written to the talk by people who are not members; they have "
                "not reached anyone:\n" + "\n".join(lines) + more + "\n\nTo let one "
                f"through, make its sender a member (mailcircle members add {circle.address} "
                "EMAIL) and process it again (mailcircle inbox retry ID). To drop one, do "
                "nothing: it stays held (mailcircle inbox list --status held)."
            ),
        )
    for spool_id, raw in held:
        from_addr, subject, message_id = _headers_of(raw)
        if from_addr and _may_tell_stranger(db, clock, circle, from_addr):
            message = composer.compose(
                circle,
                "talk_held",
                compose.TalkHeld(
                    sender_address=from_addr,
                    circle_name=circle.name,
                    subject=subject,
                    join_address=circle.action_address("join"),
                ),
                to=from_addr,
                thread=(message_id,) if message_id else (),
            )
            mailing.queue_for_circle(
                db, circle, message, now=clock.now(), purpose="talk_held", spool_id=spool_id
            )
            told += 1
        db.execute(
            "INSERT INTO talk_held_notices (spool_id, sent_at) VALUES (?, ?)",
            [spool_id, iso(clock.now())],
        )
    return told


def _headers_of(raw: bytes) -> tuple[str, str, str]:
    """(From address, Subject, Message-ID) of a spooled mail, read with the standard library."""
    message = email.message_from_bytes(raw)
    _, from_addr = addresses.from_header(str(message.get("From", "")))
    subject = str(message.get("Subject", ""))
    try:
        subject = str(make_header(decode_header(subject)))
    except Exception:  # an undecodable encoded-word: keep it as it came
        pass
    found = re.findall(r"<[^<>\s]+>", str(message.get("Message-ID", "")))
    return from_addr, compose.short_subject(subject), found[0] if found else ""


MODERATOR_NOTICE_HOURS = 6  # held talk posts: moderators hear of them at most this often


def _may_tell_moderators(db: Database, clock: Clock, circle: Circle) -> bool:
    now = clock.now()
    since = now - timedelta(hours=MODERATOR_NOTICE_HOURS)
    if marks.marked(db, circle.id, "", "talk_held", since=since):
        return False
    marks.mark(db, circle.id, "", "talk_held", now)
    return True


def _may_tell_stranger(db: Database, clock: Clock, circle: Circle, email: str) -> bool:
    """One automatic answer per stranger per week (shared with 'how to join' notices)."""
    now = clock.now()
    if members.stranger_told_lately(db, circle, email, now):
        return False
    members.remember_stranger_told(db, circle, email, now)
    return True
