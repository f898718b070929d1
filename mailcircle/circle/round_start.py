"""Starting a round: its inputs read from the database, planned outside the write lock,
then its assignments and their mails written in one short transaction.

The choice of who reviews whom is the pure ``assign.plan_round``; its inputs come from
``round_inputs``.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlite_utils import Database

from mailcircle import addresses
from mailcircle.circle import members, submissions
from mailcircle.circle.assign import RoundInput, RoundPlan, plan_round
from mailcircle.circle.assigning import (
    OPEN,
    assignment_mail,
    tell_moderators,
    title_of,
)
from mailcircle.circle.circles import Circle
from mailcircle.circle.members import Member
from mailcircle.circle.round_inputs import next_round_number, round_input, settled
from mailcircle.clock import Clock, iso
from mailcircle.db import transaction
from mailcircle.errors import MailcircleError
from mailcircle.outbound import compose, outbox
from mailcircle.rows import new_id

log = logging.getLogger("mailcircle.circle.assignments")  # the name operators know


@dataclass(frozen=True)
class RoundResult:
    number: int
    plan: RoundPlan
    assignment_ids: tuple[int, ...]


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
    attachments = submissions.files_of(db, planned)  # one query for the round's drafts
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
            message = assignment_mail(
                composer,
                circle,
                submission,
                reviewer,
                author,
                token,
                due,
                attachments.get(submission_id, ()),
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
    round_id = new_id(
        db.table("rounds").insert(
            {
                "circle_id": circle.id,
                "number": inputs.round_number,
                "starts_at": iso(starts_at),
                "status": "open",
            }
        )
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
        title = title_of(db, submission_id)
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
        f'- "{title_of(db, s)}" got {got} reviewer(s), not {circle.config.reviews_per_draft}'
        for s, got in plan.short
    ] + [
        f'- "{title_of(db, d.submission_id)}" found no reviewer at all and waits in the queue'
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
