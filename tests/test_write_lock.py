"""The worker holds the write lock only to write (issue 13): a mail is read, trimmed, routed
and its answers composed while another connection (the SMTP edge) holds the lock, and what
it acts on is checked again at the write."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from conftest import draft, process_mail, queued_mails, spool_one

from mailcircle import db as database
from mailcircle.circle import assignments, members
from mailcircle.clock import FakeClock
from mailcircle.db import transaction
from mailcircle.inbound import spool
from mailcircle.inbound.pipeline import Pipeline
from mailcircle.inbound.process import Worker
from mailcircle.outbound.compose import Composer

CIRCLE = "poets@example.org"


class Watching(Composer):
    """A composer that says when it composes a mail of one kind."""

    def __init__(self, clock, kind: str) -> None:
        super().__init__(clock)
        self.kind = kind
        self.composed = threading.Event()

    def compose(self, circle, name, context, **kwargs):
        message = super().compose(circle, name, context, **kwargs)
        if name == self.kind:
            self.composed.set()
        return message


def _while_locked(db_path, worker: Worker, spool_id: int, composer: Watching) -> tuple[bool, str]:
    """Run the worker on one mail while another connection holds the write lock (taken
    once the worker has counted its attempt and parsed the mail): whether the mail's answer
    was composed before the lock was let go, and the mail's status."""
    edge = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    locked = threading.Event()
    real_parse = worker.parse

    def parse_then_the_edge_writes(attempt):
        real_parse(attempt)
        edge.execute("BEGIN IMMEDIATE")  # the edge is writing a batch of mail
        locked.set()

    worker.parse = parse_then_the_edge_writes  # type: ignore[method-assign]
    result: list[str] = []
    thread = threading.Thread(
        target=lambda: result.append(worker.process(spool.get(worker.db, spool_id)))
    )
    thread.start()
    assert locked.wait(timeout=20)
    composed_while_locked = composer.composed.wait(timeout=5)
    edge.execute("COMMIT")
    thread.join(timeout=30)
    edge.close()
    return composed_while_locked, result[0]


def test_a_draft_is_read_and_its_acknowledgement_composed_while_the_edge_writes(
    db, db_path, clock, poets
) -> None:
    composer = Watching(clock, "submission_ack")
    worker = Worker(db, clock, composer)
    spool_id = spool_one(db, clock, draft()).id
    composed_while_locked, status = _while_locked(db_path, worker, spool_id, composer)
    assert composed_while_locked  # the steps' reads and the composing took no lock
    assert status == "done"
    [ack] = queued_mails(db, "submission_ack")
    assert ack["To"] == "ann@example.net"
    assert db.execute("SELECT COUNT(*) FROM submissions").fetchone()[0] == 1


def _critique_waiting(db, clock, poets, body: str) -> tuple[dict, str, int]:
    """Ann's draft sent out in a round, and its first reviewer's reply spooled: the
    assignment's row, the reviewer's address and the reply's spool id."""
    members.add(db, clock, poets, "cid@example.net", "Cid")
    plain = Worker(db, clock, Composer(clock))
    assert process_mail(db, clock, plain, draft(), CIRCLE, "ann@example.net") == "done"
    with transaction(db):
        assignments.start_round(db, clock, Composer(clock), poets, clock.now())
    row = next(iter(db.query("SELECT * FROM assignments ORDER BY id")))
    reviewer = members.get_by_id(db, row["reviewer_id"]).email
    to = f"poets+c-{row['token']}@example.org"
    reply = draft(
        sender=reviewer,
        to=to,
        subject="Re: Please critique",
        body=body,
        message_id=f"<critique-{row['id']}@example.net>",
        extra={"In-Reply-To": row["message_id"]},
    )
    return row, reviewer, spool_one(db, clock, reply, to=to, mail_from=reviewer).id


def test_a_critique_is_trimmed_and_delivered_while_the_edge_writes(
    db, db_path, clock, poets
) -> None:
    _, _, spool_id = _critique_waiting(
        db,
        clock,
        poets,
        "The barrow carries the poem.\n\nOn Mon, Poets wrote:\n> so much depends\n",
    )
    composer = Watching(clock, "critique_delivery")
    worker = Worker(db, clock, composer)
    composed_while_locked, status = _while_locked(db_path, worker, spool_id, composer)
    assert composed_while_locked
    assert status == "done"
    [delivery] = queued_mails(db, "critique_delivery")
    assert "The barrow carries the poem." in delivery.get_content()
    assert "so much depends" not in delivery.get_content()


def test_work_passed_on_while_its_critique_was_read_is_not_recorded_as_done(
    db, db_path, clock, poets, monkeypatch
) -> None:
    """The scheduler passes an assignment on between the worker's reading and its write:
    the critique is not recorded against the stale assignment; the mail waits, and read
    again it gets the kind answer for closed work."""
    row, reviewer, spool_id = _critique_waiting(db, clock, poets, "A late thought on the barrow.")
    real = Pipeline.decide_route
    scheduler = sqlite3.connect(db_path, isolation_level=None)

    def route_then_scheduler_writes(self, job):
        real(self, job)
        scheduler.execute(
            "UPDATE assignments SET status = ? WHERE id = ?", [assignments.PASSED_ON, row["id"]]
        )

    monkeypatch.setattr(Pipeline, "decide_route", route_then_scheduler_writes)
    with pytest.raises(spool.Busy, match="changed while its critique was read"):
        Worker(db, clock, Composer(clock)).process(spool.get(db, spool_id))
    waiting = spool.get(db, spool_id)
    assert (waiting.status, waiting.started) == ("new", 0)  # kept, to be read again
    assert db.execute("SELECT COUNT(*) FROM critiques").fetchone()[0] == 0
    assert queued_mails(db, "critique_delivery") == []
    monkeypatch.setattr(Pipeline, "decide_route", real)
    assert Worker(db, clock, Composer(clock)).process(waiting) == "refused"
    [closed] = queued_mails(db, "critique_closed")
    assert closed["To"] == reviewer
    scheduler.close()


def test_a_lazy_transaction_takes_the_lock_at_its_first_write(db, db_path) -> None:
    other = sqlite3.connect(db_path, isolation_level=None, timeout=0.1)
    with transaction(db, lazy=True):
        list(db.query("SELECT id FROM circles"))
        other.execute("BEGIN IMMEDIATE")  # nobody holds the lock while we only read
        other.execute("ROLLBACK")
        db.execute("CREATE TEMP TABLE IF NOT EXISTS seen (x)")  # a write: the lock is ours
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        with transaction(db):  # a nested block is a savepoint of the same transaction
            db.execute("INSERT INTO seen VALUES (1)")
    assert not db.conn.in_transaction
    assert db.execute("SELECT COUNT(*) FROM seen").fetchone()[0] == 1
    with pytest.raises(ValueError):
        with transaction(db, lazy=True):
            db.execute("INSERT INTO seen VALUES (2)")
            raise ValueError("undo")
    assert db.execute("SELECT COUNT(*) FROM seen").fetchone()[0] == 1  # rolled back
    assert not database.CircleDatabase.lazy
    other.close()


def test_the_worker_commits_without_a_sync_and_the_edge_with_one(db_path) -> None:
    """The edge's commit is on disk before its 250 (synchronous=FULL); the worker's
    outcomes need no sync of their own (NORMAL: a power cut undoes them whole, and the
    mail is processed again)."""
    edge = database.connect(db_path)
    worker_db = database.connect(db_path)
    Worker(worker_db, FakeClock(), Composer(FakeClock()))
    assert edge.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert worker_db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    edge.close()
    worker_db.close()
