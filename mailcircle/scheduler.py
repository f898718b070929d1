"""The circle's rhythm: rounds, reminders and expiry, computed from the database and the clock.

Every job works out what is due from the state and ``now``, so a job missed while the
service was down runs at the next start, and running it twice does nothing the second
time. `serve` and `poll` run the loop; `mailcircle run-due` runs it once (cron, tests).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import schedule
from sqlite_utils import Database

from mailcircle import db as database
from mailcircle.circle import assignments, circles, digest, engagement, talk_held
from mailcircle.circle.circles import Circle
from mailcircle.circle.rounds import latest_start
from mailcircle.clock import Clock, iso, parse_iso
from mailcircle.db import transaction
from mailcircle.outbound.compose import Composer

log = logging.getLogger(__name__)


@dataclass
class DueReport:
    rounds: list[str] = field(default_factory=list)  # one line per round started
    reminders: int = 0
    expired: int = 0
    digests: int = 0
    agendas: int = 0
    talk: int = 0  # engagement-day kick-offs and notices of held talk posts
    errors: list[str] = field(default_factory=list)
    busy: int = 0  # jobs that found the database busy or full: run again soon

    @property
    def changed(self) -> bool:
        return bool(
            self.rounds or self.reminders or self.expired or self.digests or self.agendas
        ) or bool(self.talk)


def round_due(db: Database, clock: Clock, circle: Circle) -> bool:
    """Whether the circle's latest round start has passed without a round."""
    slot = latest_start(clock.now(), circle.config)
    if circle.created_at and slot < parse_iso(circle.created_at):
        return False  # the circle did not exist yet at that start
    row = db.execute(
        "SELECT 1 FROM rounds WHERE circle_id = ? AND starts_at >= ?", [circle.id, iso(slot)]
    ).fetchone()
    return row is None


def run_due(db: Database, clock: Clock, composer: Composer) -> DueReport:
    """Everything due now, for every circle, each job in its own transaction."""
    report = DueReport()
    for circle in circles.all_circles(db):
        # Expiry first: work that lapsed counts against its reviewer before a round is planned.
        jobs: tuple[tuple[str, Callable[..., None]], ...] = (
            ("expiry", _expire),
            ("reminders", _remind),
            ("round", _round),
            ("digests", _digests),
            ("agendas", _agendas),
            ("talk", _talk),
        )
        for name, run in jobs:
            job = functools.partial(run, db, clock, composer, circle, report)
            try:
                if name == "round":  # plans without the write lock; writes in its own transaction
                    job()
                    continue
                with transaction(db):
                    job()
            except Exception as err:  # one failing job never stops the others
                if database.transient(err):  # nothing was written; it runs again soon
                    log.warning("%s: the %s job waits: %s", circle.address, name, err)
                    report.busy += 1
                else:
                    log.exception("%s: the %s job failed", circle.address, name)
                report.errors.append(f"{circle.address} {name}: {err}")
    return report


def _round(
    db: Database, clock: Clock, composer: Composer, circle: Circle, report: DueReport
) -> None:
    if not round_due(db, clock, circle):
        return
    slot = latest_start(clock.now(), circle.config)
    try:
        result = assignments.start_round(db, clock, composer, circle, slot)
    except assignments.RoundTaken as taken:  # another process got there first: nothing to do
        log.info("%s", taken)
        return
    line = (
        f"{circle.address}: round {result.number} sent {len(result.assignment_ids)} assignments"
        f" for {len({s for s, _ in result.plan.assignments})} drafts"
    )
    if result.plan.deferred:
        line += f", {len(result.plan.deferred)} drafts wait"
    report.rounds.append(line)
    log.info("%s", line)


def _remind(
    db: Database, clock: Clock, composer: Composer, circle: Circle, report: DueReport
) -> None:
    report.reminders += assignments.send_reminders(db, clock, composer, circle)


def _expire(
    db: Database, clock: Clock, composer: Composer, circle: Circle, report: DueReport
) -> None:
    report.expired += assignments.expire_overdue(db, clock, composer, circle)


def _digests(
    db: Database, clock: Clock, composer: Composer, circle: Circle, report: DueReport
) -> None:
    report.digests += digest.send_due_digests(db, clock, composer, circle)


def _agendas(
    db: Database, clock: Clock, composer: Composer, circle: Circle, report: DueReport
) -> None:
    report.agendas += engagement.send_agendas(db, clock, composer, circle)


def _talk(
    db: Database, clock: Clock, composer: Composer, circle: Circle, report: DueReport
) -> None:
    report.talk += engagement.send_kickoffs(db, clock, composer, circle)
    report.talk += talk_held.tell_about_held(db, clock, composer, circle)


class Scheduler:
    """The loop inside `serve` and `poll`: its own schedule.Scheduler, every job wrapped."""

    def __init__(
        self,
        db_path: Path,
        clock: Clock,
        composer: Composer,
        *,
        every_seconds: int = 60,
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self.db_path = db_path
        self.clock = clock
        self.composer = composer
        self.on_queued = on_queued
        self.jobs = schedule.Scheduler()
        self.jobs.every(every_seconds).seconds.do(self._tick)
        self._db: Database | None = None
        self._again_at: float | None = None  # a busy database: run again before the minute

    def _tick(self) -> None:
        assert self._db is not None
        self._again_at = None
        try:
            report = run_due(self._db, self.clock, self.composer)
        except Exception as err:
            if not database.transient(err):
                log.exception("the scheduler hit an error; it will try again")
            report = DueReport(busy=1)
        if report.busy:
            self._again_at = time.monotonic() + self.BUSY_PAUSE
        if report.changed:
            self.on_queued()

    BUSY_PAUSE = 5.0

    def run(self, stop: threading.Event) -> None:
        self._db = database.connect(self.db_path)
        try:
            self._tick()  # catch up on anything missed while the service was down
            while not stop.is_set():
                self.jobs.run_pending()
                if self._again_at is not None and time.monotonic() >= self._again_at:
                    self._tick()
                stop.wait(1)
        finally:
            self._db.close()
