"""Starting a round: planned and composed without the write lock, written in one short
transaction that checks nothing changed underneath (another process on the same database
is a second connection here, as it would be in production)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import draft, spool_one

from mailcircle import db as database
from mailcircle.circle import assignments, members
from mailcircle.db import transaction
from mailcircle.inbound.process import Worker
from mailcircle.outbound.compose import Composer
from mailcircle.scheduler import run_due


class Meddling(Composer):
    """A composer that, when asked for the round's first assignment mail, lets another
    process change the database through its own connection."""

    def __init__(self, clock, meddle: Callable[[], None]) -> None:
        super().__init__(clock)
        self.meddle = meddle
        self.meddled = 0

    def compose(self, circle, name, context, **kwargs):
        if name == "assignment" and not self.meddled:
            self.meddled += 1
            self.meddle()
        return super().compose(circle, name, context, **kwargs)


@pytest.fixture
def queued(db, clock, poets):
    """Ann's and Ben's drafts wait; Cid and Dee are members too."""
    members.add(db, clock, poets, "cid@example.net", "Cid")
    members.add(db, clock, poets, "dee@example.net", "Dee")
    worker = Worker(db, clock, Composer(clock))
    for sender, mid in (("Ann <ann@example.net>", "<a@x>"), ("Ben <ben@example.net>", "<b@x>")):
        assert worker.process(spool_one(db, clock, draft(sender=sender, message_id=mid))) == "done"
    return poets


def other_process(db_path, change: Callable) -> Callable[[], None]:
    def meddle() -> None:
        other = database.connect(db_path)
        try:
            with transaction(other):  # would wait (and fail) if the round held the lock
                change(other)
        finally:
            other.close()

    return meddle


def test_a_member_paused_while_the_round_is_planned_gets_no_assignment(
    db,
    db_path,
    clock,
    queued,
) -> None:
    cid = members.find(db, queued, "cid@example.net")
    assert cid is not None
    composer = Meddling(
        clock, other_process(db_path, lambda other: members.set_status(other, cid.id, "paused"))
    )
    result = assignments.start_round(db, clock, composer, queued, clock.now())
    assert composer.meddled == 1
    reviewers = {r for _, r in result.plan.assignments}
    assert cid.id not in reviewers and reviewers  # planned again without Cid
    assert db.execute("SELECT COUNT(*) FROM rounds").fetchone()[0] == 1
    rows = db.execute("SELECT reviewer_id FROM assignments").fetchall()
    assert sorted(r for (r,) in rows) == sorted(r for _, r in result.plan.assignments)
    mailed = db.execute("SELECT COUNT(*) FROM outbox WHERE purpose = 'assignment'").fetchone()
    assert mailed[0] == len(result.assignment_ids)


def test_a_round_started_meanwhile_by_another_process_is_not_written_twice(
    db,
    db_path,
    clock,
    queued,
) -> None:
    def start_elsewhere(other) -> None:
        other.execute(
            "INSERT INTO rounds (circle_id, number, starts_at) VALUES (?, 1, ?)",
            [queued.id, clock.now().isoformat()],
        )

    composer = Meddling(clock, other_process(db_path, start_elsewhere))
    with pytest.raises(assignments.RoundTaken, match="round 1 of poets@example.org"):
        assignments.start_round(db, clock, composer, queued, clock.now())
    assert db.execute("SELECT COUNT(*) FROM rounds").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM assignments").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM outbox WHERE purpose = 'assignment'").fetchone()[0] == 0


def test_the_scheduler_leaves_a_round_another_process_started(
    db,
    db_path,
    clock,
    queued,
) -> None:
    def start_elsewhere(other) -> None:
        other.execute(
            "INSERT INTO rounds (circle_id, number, starts_at) VALUES (?, 1, ?)",
            [queued.id, clock.now().isoformat()],
        )

    report = run_due(db, clock, Meddling(clock, other_process(db_path, start_elsewhere)))
    assert report.rounds == [] and report.errors == []
    assert db.execute("SELECT COUNT(*) FROM assignments").fetchone()[0] == 0
    # The drafts still wait for the next round.
    queued_now = db.execute("SELECT COUNT(*) FROM submissions WHERE status = 'queued'").fetchone()
    assert queued_now[0] == 2
