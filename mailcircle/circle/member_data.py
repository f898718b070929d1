"""One person's data in one circle: everything stored about them, exported or erased on request.

What is "about them": their member row; the drafts they sent (with the text, and the
files attached: names and sizes in the export); the critiques they gave and the ones they
received; their assignments and the tokens in them; join and leave confirmations sent to
their address; bounces, digests and engagement answers recorded for them; their talk
posts, agenda items and sender records; the inbound mail in the spool that holds their
words (mail they sent, and the mail their drafts, critiques, posts and bounces came from);
and the outgoing mail to them.

Erasing keeps the database whole: rows other people's records point at (the member row,
their drafts, their critiques) are anonymised in place, never left dangling; rows that only
matter to them (the files attached to their drafts too) are deleted; their spooled mail
keeps its row (so a re-delivery is still recognised) with the raw bytes blanked.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlite_utils import Database

from mailcircle import addresses
from mailcircle.circle import assignments
from mailcircle.circle.circles import Circle
from mailcircle.circle.members import LEFT, Member, find
from mailcircle.clock import Clock, iso
from mailcircle.db import transaction
from mailcircle.errors import NotFound
from mailcircle.outbound.compose import Composer

ERASED = "(erased)"


def _member(db: Database, circle: Circle, email: str) -> Member:
    member = find(db, circle, email, include_left=True)
    if member is None:
        raise NotFound(f"{addresses.normalize(email)} is not a member of {circle.address}")
    return member


def _rows(db: Database, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    return [dict(row) for row in db.query(sql, params)]


def _spool_ids() -> str:
    """SQL selecting the ids of the spool rows holding this person's mail (params: 5 values)."""
    return (
        "SELECT id FROM spool WHERE circle_id = ? AND lower(mail_from) = ?"
        " UNION SELECT spool_id FROM submissions WHERE member_id = ?"
        " UNION SELECT c.spool_id FROM critiques c JOIN assignments a ON a.id = c.assignment_id"
        " WHERE a.reviewer_id = ?"
        " UNION SELECT spool_id FROM bounces WHERE member_id = ?"
        " UNION SELECT spool_id FROM talk_posts WHERE member_id = ?"
    )


def export(db: Database, clock: Clock, circle: Circle, email: str, *, raw: bool) -> dict[str, Any]:
    """Everything stored about ``email`` in ``circle``, as plain data for JSON."""
    member = _member(db, circle, email)
    mid = member.id
    spool_params = [circle.id, member.email, mid, mid, mid, mid]
    spool_columns = (
        "id, received_at, source, mail_from, rcpt_to, message_id, size, status, outcome"
        + (", raw" if raw else "")
    )
    inbound = _rows(
        db,
        f"SELECT {spool_columns} FROM spool WHERE id IN ({_spool_ids()}) ORDER BY id",
        spool_params,
    )
    outbox_columns = (
        "id, created_at, purpose, message_id, mail_from, rcpt_to, status, attempts,"
        " last_error, sent_at" + (", raw" if raw else "")
    )
    outgoing = _rows(
        db,
        f"SELECT {outbox_columns} FROM outbox WHERE circle_id = ? AND lower(rcpt_to) = ?"
        " ORDER BY id",
        [circle.id, member.email],
    )
    for row in (*inbound, *outgoing):
        if raw:
            row["raw"] = bytes(row["raw"]).decode("utf-8", "replace")
    return {
        "circle": circle.address,
        "email": member.email,
        "exported_at": iso(clock.now()),
        "member": _rows(db, "SELECT * FROM members WHERE id = ?", [mid]),
        "drafts": _rows(db, "SELECT * FROM submissions WHERE member_id = ? ORDER BY id", [mid]),
        "draft_files": _rows(
            db,
            "SELECT f.submission_id, f.position, f.filename, f.content_type,"
            " length(f.payload) AS size FROM draft_files f"
            " JOIN submissions s ON s.id = f.submission_id WHERE s.member_id = ?"
            " ORDER BY f.submission_id, f.position",
            [mid],
        ),
        "assignments": _rows(
            db,
            "SELECT a.id, a.submission_id, s.title, a.status, a.token, a.assigned_at, a.due_at,"
            " a.reminded_at FROM assignments a JOIN submissions s ON s.id = a.submission_id"
            " WHERE a.reviewer_id = ? ORDER BY a.id",
            [mid],
        ),
        "critiques_given": _rows(
            db,
            "SELECT c.id, s.title, c.body, c.trimmed, c.late, c.received_at, c.thanked_at, c.token"
            " FROM critiques c JOIN assignments a ON a.id = c.assignment_id"
            " JOIN submissions s ON s.id = a.submission_id WHERE a.reviewer_id = ? ORDER BY c.id",
            [mid],
        ),
        "critiques_received": _rows(
            db,
            "SELECT c.id, s.title, c.body, c.late, c.received_at, c.thanked_at, c.token"
            " FROM critiques c JOIN assignments a ON a.id = c.assignment_id"
            " JOIN submissions s ON s.id = a.submission_id WHERE s.member_id = ? ORDER BY c.id",
            [mid],
        ),
        "confirmations": _rows(
            db,
            "SELECT * FROM confirmations WHERE circle_id = ? AND lower(email) = ?",
            [circle.id, member.email],
        ),
        "bounces": _rows(db, "SELECT * FROM bounces WHERE member_id = ? ORDER BY id", [mid]),
        "digests": _rows(db, "SELECT * FROM digests WHERE member_id = ? ORDER BY slot", [mid]),
        "engagement_answers": _rows(
            db,
            "SELECT e.day, e.topic, r.answer, r.answered_at FROM engagement_rsvps r"
            " JOIN engagement_days e ON e.id = r.engagement_id WHERE r.member_id = ?",
            [mid],
        ),
        "stranger_notices": _rows(
            db,
            "SELECT * FROM stranger_notices WHERE circle_id = ? AND lower(email) = ?",
            [circle.id, member.email],
        ),
        "talk_posts": _rows(
            db,
            "SELECT id, subject, body, word_count, posted_at, message_id FROM talk_posts"
            " WHERE member_id = ? ORDER BY id",
            [mid],
        ),
        "engagement_agenda_items": _rows(
            db,
            "SELECT e.day, a.item, a.created_at FROM engagement_agenda a"
            " JOIN engagement_days e ON e.id = a.engagement_id"
            " WHERE e.circle_id = ? AND lower(a.added_by) = ?",
            [circle.id, member.email],
        ),
        "sender_marks": _rows(
            db,
            "SELECT kind, value, at FROM sender_marks WHERE circle_id = ? AND lower(email) = ?",
            [circle.id, member.email],
        ),
        "inbound_mail": inbound,
        "outgoing_mail": outgoing,
    }


@dataclass
class Erased:
    """What `erase` did, one count per kind of record."""

    email: str
    counts: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [f"{what}: {n}" for what, n in self.counts.items() if n]


def erase(db: Database, clock: Clock, composer: Composer, circle: Circle, email: str) -> Erased:
    """Remove or anonymise everything stored about ``email`` in ``circle``, in one transaction.

    Their open assignments pass to backups first (as when a member is away), so nobody's
    draft starves; open assignments on their own drafts are withdrawn without counting
    against the reviewers; tokens that could still reach them are closed.
    """
    member = _member(db, circle, email)
    mid = member.id
    done = Erased(member.email)
    count = done.counts
    now = iso(clock.now())
    with transaction(db):
        count["assignments passed to backups"] = assignments.pass_on(
            db, clock, composer, circle, member
        )
        # Assignment mails to others carry their drafts: not sent now, and blanked if sent.
        carrying = (
            "SELECT a.message_id FROM assignments a JOIN submissions s ON s.id = a.submission_id"
            " WHERE s.member_id = ? AND a.message_id != ''"
        )
        count["assignment mails with their drafts deleted or blanked"] = (
            db.execute(
                f"DELETE FROM outbox WHERE status = 'queued' AND message_id IN ({carrying})",
                [mid],
            ).rowcount
            + db.execute(
                f"UPDATE outbox SET raw = X'' WHERE message_id IN ({carrying})", [mid]
            ).rowcount
        )
        # Their talk posts: the copies to others not sent now, blanked if sent; the text gone.
        posts = "SELECT spool_id FROM talk_posts WHERE member_id = ?"
        count["talk copies of their posts deleted or blanked"] = (
            db.execute(
                "DELETE FROM outbox WHERE status = 'queued' AND purpose = 'talk_post'"
                f" AND spool_id IN ({posts})",
                [mid],
            ).rowcount
            + db.execute(
                "UPDATE outbox SET raw = X'' WHERE purpose = 'talk_post'"
                f" AND spool_id IN ({posts})",
                [mid],
            ).rowcount
        )
        count["talk posts, text erased"] = db.execute(
            "UPDATE talk_posts SET subject = ?, body = '', word_count = 0 WHERE member_id = ?",
            [ERASED, mid],
        ).rowcount
        count["engagement agenda items, author erased"] = db.execute(
            "UPDATE engagement_agenda SET added_by = ? WHERE lower(added_by) = ?"
            " AND engagement_id IN (SELECT id FROM engagement_days WHERE circle_id = ?)",
            [ERASED, member.email, circle.id],
        ).rowcount
        # Open work on their drafts: withdrawn, not missed (nothing refers to open work
        # except a backup's backup_for).
        open_on_theirs = (
            "SELECT a.id FROM assignments a JOIN submissions s ON s.id = a.submission_id"
            " WHERE s.member_id = ? AND a.status = ?"
        )
        db.execute(
            f"UPDATE assignments SET backup_for = NULL WHERE backup_for IN ({open_on_theirs})",
            [mid, assignments.OPEN],
        )
        count["open assignments on their drafts withdrawn"] = db.execute(
            f"DELETE FROM assignments WHERE id IN ({open_on_theirs})", [mid, assignments.OPEN]
        ).rowcount
        # Tokens that lead to them: their assignments, critiques given and received.
        for row in db.execute(
            "SELECT a.id FROM assignments a JOIN submissions s ON s.id = a.submission_id"
            " WHERE a.reviewer_id = ? OR s.member_id = ?",
            [mid, mid],
        ).fetchall():
            db.execute(
                "UPDATE assignments SET token = ? WHERE id = ?",
                ["erased-" + secrets.token_hex(12), row[0]],
            )
        db.execute(
            "UPDATE critiques SET token = NULL WHERE assignment_id IN (SELECT a.id FROM"
            " assignments a JOIN submissions s ON s.id = a.submission_id"
            " WHERE a.reviewer_id = ? OR s.member_id = ?)",
            [mid, mid],
        )
        count["critiques given, text erased"] = db.execute(
            "UPDATE critiques SET body = ?, trimmed = '' WHERE assignment_id IN"
            " (SELECT id FROM assignments WHERE reviewer_id = ?)",
            [ERASED, mid],
        ).rowcount
        count["drafts, text erased"] = db.execute(
            "UPDATE submissions SET title = ?, body = '', asks = '', thread = '', word_count = 0,"
            " status = CASE WHEN status IN ('queued', 'assigned') THEN 'withdrawn' ELSE status END"
            " WHERE member_id = ?",
            [ERASED, mid],
        ).rowcount
        count["files attached to their drafts deleted"] = db.execute(
            "DELETE FROM draft_files WHERE submission_id IN"
            " (SELECT id FROM submissions WHERE member_id = ?)",
            [mid],
        ).rowcount
        spool_ids = _spool_ids()
        count["inbound mails blanked"] = db.execute(
            f"UPDATE spool SET raw = X'', size = 0, mail_from = '', error = '',"
            f" outcome = replace(outcome, ?, ?) WHERE id IN ({spool_ids})",
            [member.email, ERASED, circle.id, member.email, mid, mid, mid, mid],
        ).rowcount
        # Other mail's outcomes may name them ("... delivered to ann@example.net").
        db.execute(
            "UPDATE spool SET outcome = replace(outcome, ?, ?)"
            " WHERE circle_id = ? AND instr(outcome, ?) > 0",
            [member.email, ERASED, circle.id, member.email],
        )
        count["outgoing mails deleted"] = db.execute(
            "DELETE FROM outbox WHERE circle_id = ? AND lower(rcpt_to) = ?",
            [circle.id, member.email],
        ).rowcount
        for label, sql, params in (
            (
                "confirmations deleted",
                "DELETE FROM confirmations WHERE circle_id = ? AND lower(email) = ?",
                [circle.id, member.email],
            ),
            (
                "notices to a stranger deleted",
                "DELETE FROM stranger_notices WHERE circle_id = ? AND lower(email) = ?",
                [circle.id, member.email],
            ),
            (
                "sender records deleted",
                "DELETE FROM sender_marks WHERE circle_id = ? AND lower(email) = ?",
                [circle.id, member.email],
            ),
            ("bounces deleted", "DELETE FROM bounces WHERE member_id = ?", [mid]),
            ("digests deleted", "DELETE FROM digests WHERE member_id = ?", [mid]),
            (
                "engagement answers deleted",
                "DELETE FROM engagement_rsvps WHERE member_id = ?",
                [mid],
            ),
        ):
            count[label] = db.execute(sql, params).rowcount
        db.execute(
            "UPDATE members SET email = ?, name = '', status = ?, role = 'member',"
            " timezone = 'UTC', bounce_token = NULL, left_at = COALESCE(left_at, ?)"
            " WHERE id = ?",
            [f"erased-{mid}@erased.invalid", LEFT, now, mid],
        )
        count["member record anonymised"] = 1
    return done
