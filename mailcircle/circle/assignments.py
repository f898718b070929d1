"""Assignments in the database: starting a round, reminding, expiring, passing to backups.

The choice of who reviews whom is the pure ``assign.plan_round``; this module reads its
inputs from the database, writes its result and queues the mails. A round and its mails
are committed together or not at all, in one short transaction after the planning.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from mailcircle import addresses
from mailcircle.circle import mailing, members
from mailcircle.circle.assign import (
    PastAssignment,
    QueuedDraft,
    RoundInput,
    RoundPlan,
    RoundSettings,
    plan_round,
)
from mailcircle.circle.circles import Circle
from mailcircle.circle.members import Member
from mailcircle.circle.settings import CircleSettings
from mailcircle.clock import Clock, iso, parse_iso
from mailcircle.db import transaction
from mailcircle.errors import MailcircleError
from mailcircle.mail import attachments_of
from mailcircle.outbound import compose, outbox

log = logging.getLogger(__name__)

OPEN, DONE, EXPIRED, PASSED_ON = "open", "done", "expired", "passed_on"
HISTORY_ROUNDS = 12


@dataclass(frozen=True)
class RoundResult:
    number: int
    plan: RoundPlan
    assignment_ids: tuple[int, ...]


def round_settings(circle: Circle) -> RoundSettings:
    c = circle.config
    return RoundSettings(
        reviews_per_draft=c.reviews_per_draft,
        max_reviews_per_round=c.max_reviews_per_round,
        drafts_per_author=c.drafts_per_author,
        max_words=c.max_words,
        participation_needed=c.participation_needed,
        participation_window=c.participation_window,
    )


def history(
    db: Database, circle: Circle, *, reviewer_id: int | None = None
) -> tuple[PastAssignment, ...]:
    """The circle's assignments in its last HISTORY_ROUNDS rounds, with whether each was
    critiqued; with ``reviewer_id``, only that member's (all the give-and-take check of one
    member needs).

    Work still open (not yet due, no critique yet) is left out: it is neither given nor
    missed yet, so nobody is held back for a round that is still under way. Only the
    window's rounds are read, through indexes, so the cost does not grow with the circle's age.
    """
    first = db.execute(
        "SELECT MIN(id), MIN(number) FROM rounds WHERE circle_id = ? AND number > ?",
        [circle.id, next_round_number(db, circle) - 1 - HISTORY_ROUNDS],
    ).fetchone()
    if first[0] is None:
        return ()
    critiqued = "EXISTS (SELECT 1 FROM critiques c WHERE c.assignment_id = a.id)"
    if reviewer_id is None:  # the window's rounds, then their assignments
        source = "rounds r JOIN assignments a ON a.round_id = r.id"
        scope, params = "r.circle_id = ? AND r.number >= ?", [circle.id, first[1]]
    else:  # the member's assignments since the window's first round (ids grow with time)
        source = "assignments a JOIN rounds r ON r.id = a.round_id"
        scope = "a.reviewer_id = ? AND a.round_id >= ? AND r.circle_id = ?"
        params = [reviewer_id, first[0], circle.id]
    rows = db.execute(
        f"""
        SELECT r.number, a.reviewer_id, s.member_id, {critiqued} AS done
        FROM {source} JOIN submissions s ON s.id = a.submission_id
        WHERE {scope} AND (a.status != ? OR {critiqued})
        ORDER BY r.number, a.id
        """,
        [*params, OPEN],
    ).fetchall()
    return tuple(
        PastAssignment(n, reviewer, author, bool(done)) for n, reviewer, author, done in rows
    )


def next_round_number(db: Database, circle: Circle) -> int:
    row = db.execute("SELECT MAX(number) FROM rounds WHERE circle_id = ?", [circle.id]).fetchone()
    return int(row[0] or 0) + 1


def round_input(db: Database, circle: Circle, *, with_history: bool = True) -> RoundInput:
    reviewers = tuple(
        row[0]
        for row in db.execute(
            "SELECT id FROM members WHERE circle_id = ? AND status = ? ORDER BY id",
            [circle.id, members.ACTIVE],
        )
    )
    drafts = tuple(
        QueuedDraft(submission_id=row[0], author_id=row[1], word_count=row[2])
        for row in db.execute(
            "SELECT s.id, s.member_id, s.word_count FROM submissions s"
            " JOIN members m ON m.id = s.member_id"
            " WHERE s.circle_id = ? AND s.status = 'queued' AND m.status != ? ORDER BY s.id",
            [circle.id, members.LEFT],
        )
    )
    return RoundInput(
        round_number=next_round_number(db, circle),
        reviewers=reviewers,
        drafts=drafts,
        history=history(db, circle) if with_history else (),
        settings=round_settings(circle),
    )


class _Settled(Circle):
    """A circle whose settings are read from their JSON once, not once per use: a round
    (or a run of digests) asks for them thousands of times."""

    @functools.cached_property
    def config(self) -> CircleSettings:  # type: ignore[override]
        return Circle.config.fget(self)  # type: ignore[attr-defined,no-any-return]


def settled(circle: Circle) -> Circle:
    if isinstance(circle, _Settled):
        return circle
    return _Settled(circle.id, circle.address, circle.name, circle.settings, circle.created_at)


class RoundTaken(MailcircleError):
    """Another process started the round while this one was planning it."""


PLAN_ATTEMPTS = 3  # plans made outside the write lock before planning under it


@dataclass(frozen=True)
class _Prepared:
    """A planned round with its mails composed, ready to write in one short transaction."""

    inputs: RoundInput
    plan: RoundPlan
    due: datetime
    rows: tuple[tuple[int, int, str, str, outbox.Prepared], ...]  # sid, reviewer, token, mid
    failed: tuple[tuple[int, str], ...] = ()  # drafts whose mail could not be made, and why


def start_round(
    db: Database, clock: Clock, composer: compose.Composer, circle: Circle, starts_at: datetime
) -> RoundResult:
    """Plan and record a round and queue its mails.

    The history is read, the round planned and its mails composed without holding the
    write lock (inside a read snapshot); then one short transaction writes the round, its
    assignments and its mails, after checking that nothing the plan rests on changed
    meanwhile: a member paused or a draft gone means planning again, and a round started
    by another process raises RoundTaken. Inside a caller's transaction it all happens there.
    """
    for _ in range(PLAN_ATTEMPTS):
        with _snapshot(db):
            prepared = _prepare(db, clock, composer, circle)
        with transaction(db):
            if _unchanged(db, circle, prepared):
                return _record(db, clock, composer, circle, starts_at, prepared)
    with transaction(db):  # the circle keeps changing under us: plan under the lock
        prepared = _prepare(db, clock, composer, circle)
        return _record(db, clock, composer, circle, starts_at, prepared)


@contextlib.contextmanager
def _snapshot(db: Database) -> Iterator[None]:
    """A read transaction: a consistent view of the database that blocks no writer (WAL)."""
    if db.conn.in_transaction:
        yield
        return
    db.conn.execute("BEGIN DEFERRED")
    try:
        yield
    finally:
        db.conn.execute("COMMIT")


def _prepare(db: Database, clock: Clock, composer: compose.Composer, circle: Circle) -> _Prepared:
    circle = settled(circle)  # its settings are asked for a few times per mail
    inputs = round_input(db, circle)
    plan = plan_round(inputs)
    due = clock.now() + timedelta(days=circle.config.critique_days)
    people = {
        row["id"]: (Member.from_row(row), row["bounce_token"])
        for row in db.query("SELECT * FROM members WHERE circle_id = ?", [circle.id])
    }
    planned = sorted({sid for sid, _ in plan.assignments})
    drafts: dict[int, dict[str, Any]] = {}
    for at in range(0, len(planned), 500):
        chunk = planned[at : at + 500]
        marks = ", ".join("?" * len(chunk))
        for row in db.query(f"SELECT * FROM submissions WHERE id IN ({marks})", chunk):
            drafts[row["id"]] = row
    attachments = {sid: _draft_attachments(db, drafts[sid]["spool_id"]) for sid in planned}
    rows = []
    failed: dict[int, str] = {}
    for submission_id, reviewer_id in plan.assignments:
        if submission_id in failed:
            continue
        submission = drafts[submission_id]
        reviewer, bounce_token = people[reviewer_id]
        author = people[submission["member_id"]][0]
        token = secrets.token_hex(12)
        try:
            message = _assignment_mail(
                composer,
                circle,
                submission,
                reviewer,
                author,
                token,
                due,
                attachments[submission_id],
            )
        except Exception as err:  # one draft's mail must never stop the round for the rest
            log.exception("round: the assignment mail for submission #%d failed", submission_id)
            failed[submission_id] = f"{type(err).__name__}: {err}"
            continue
        mail_from = (
            circle.action_address(addresses.BOUNCE, bounce_token)
            if bounce_token
            else members.bounce_address(db, circle, reviewer.email)
        )
        queued = outbox.prepare(
            message,
            circle_id=circle.id,
            purpose="assignment",
            mail_from=mail_from,
            rcpt_to=reviewer.email,
        )
        rows.append((submission_id, reviewer_id, token, message["Message-ID"], queued))
    kept = tuple(row for row in rows if row[0] not in failed)
    return _Prepared(inputs, plan, due, kept, tuple(failed.items()))


def _unchanged(db: Database, circle: Circle, prepared: _Prepared) -> bool:
    """Whether the plan still stands (inside the write transaction); RoundTaken if another
    process started the round meanwhile."""
    if next_round_number(db, circle) != prepared.inputs.round_number:
        raise RoundTaken(
            f"round {prepared.inputs.round_number} of {circle.address} was started meanwhile"
        )
    now = round_input(db, circle, with_history=False)
    return now.reviewers == prepared.inputs.reviewers and set(prepared.inputs.drafts) <= set(
        now.drafts
    )


def _record(
    db: Database,
    clock: Clock,
    composer: compose.Composer,
    circle: Circle,
    starts_at: datetime,
    prepared: _Prepared,
) -> RoundResult:
    inputs, plan = prepared.inputs, prepared.plan
    if next_round_number(db, circle) != inputs.round_number:
        raise RoundTaken(f"round {inputs.round_number} of {circle.address} was started meanwhile")
    round_id = int(
        db["rounds"]
        .insert(
            {
                "circle_id": circle.id,
                "number": inputs.round_number,
                "starts_at": iso(starts_at),
                "status": "open",
            }
        )
        .last_pk
    )
    now = clock.now()
    first = db.execute("SELECT COALESCE(MAX(id), 0) FROM assignments").fetchone()[0] + 1
    db.conn.executemany(
        "INSERT INTO assignments (id, round_id, submission_id, reviewer_id, token, status,"
        " assigned_at, due_at, message_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (first + n, round_id, sid, reviewer, token, OPEN, iso(now), iso(prepared.due), mid)
            for n, (sid, reviewer, token, mid, _) in enumerate(prepared.rows)
        ),
    )
    outbox.queue_prepared(db, [queued for *_, queued in prepared.rows], now=now)
    db.conn.executemany(
        "UPDATE submissions SET status = 'assigned' WHERE id = ?",
        ([sid] for sid in sorted({s for s, *_ in prepared.rows})),
    )
    for submission_id, error in prepared.failed:
        title = _title(db, submission_id)
        tell_moderators(
            db,
            clock,
            composer,
            circle,
            topic=f'Round {inputs.round_number}: "{title}" could not go out',
            details=f'The assignment mail for draft #{submission_id}, "{title}",'
            f" could not be made ({error}). The rest of the round went out; this draft stays"
            " in the queue and is tried again next round. To take it out: "
            f"mailcircle drafts withdraw {submission_id}",
        )
    created = tuple(range(first, first + len(prepared.rows)))
    problems = [
        f'- "{_title(db, s)}" got {got} reviewer(s), not {circle.config.reviews_per_draft}'
        for s, got in plan.short
    ] + [
        f'- "{_title(db, d.submission_id)}" found no reviewer at all and waits in the queue'
        for d in plan.deferred
        if d.reason == "no_reviewers"
    ]
    if problems:
        tell_moderators(
            db,
            clock,
            composer,
            circle,
            topic=f"Round {inputs.round_number}: not enough reviewers",
            details="The circle is too small (or too many members are paused) for every "
            "draft to get its reviewers this round:\n" + "\n".join(problems),
        )
    return RoundResult(inputs.round_number, plan, created)


def _assignment_mail(
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
    attachments = _draft_attachments(db, submission["spool_id"])
    message = _assignment_mail(
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
    assignment_id = int(
        db["assignments"]
        .insert(
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
        .last_pk
    )
    _queue(db, clock, circle, message, "assignment")
    return assignment_id


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
        _queue(db, clock, circle, message, "reminder")
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


def tell_moderators(
    db: Database,
    clock: Clock,
    composer: compose.Composer,
    circle: Circle,
    *,
    topic: str,
    details: str,
) -> int:
    sent = 0
    for moderator in members.moderators(db, circle):
        message = composer.compose(
            circle,
            "moderator_notice",
            compose.ModeratorNotice(
                moderator_name=moderator.greeting_name,
                circle_name=circle.name,
                topic=topic,
                details=details,
            ),
            to=moderator.email,
        )
        _queue(db, clock, circle, message, "moderator_notice")
        sent += 1
    return sent


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


def due_text(moment: datetime, member: Member) -> str:
    try:
        zone = ZoneInfo(member.timezone)
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    local = moment.astimezone(zone)
    return local.strftime(f"%A %-d %B at %H:%M ({member.timezone})")


def get_submission(db: Database, submission_id: int) -> dict[str, Any]:
    return dict(next(iter(db.query("SELECT * FROM submissions WHERE id = ?", [submission_id]))))


def _title(db: Database, submission_id: int) -> str:
    return str(get_submission(db, submission_id)["title"])


def _draft_attachments(db: Database, spool_id: int) -> tuple[tuple[str, str, bytes], ...]:
    row = db.execute("SELECT raw FROM spool WHERE id = ?", [spool_id]).fetchone()
    if row is None:
        return ()
    headers = BytesHeaderParser(policy=compat32).parsebytes(row[0])
    if headers.get_content_maintype() != "multipart":
        return ()  # a single part is the text itself: nothing attached (and no parse to pay)
    return tuple((a.filename or "draft", a.content_type, a.payload) for a in attachments_of(row[0]))


def _queue(db: Database, clock: Clock, circle: Circle, message: Message, purpose: str) -> None:
    mailing.queue_for_circle(db, circle, message, now=clock.now(), purpose=purpose)  # type: ignore[arg-type]
