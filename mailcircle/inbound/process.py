"""The worker: drains the spool, one mail at a time, through the pipeline (pipeline.py),
and records each mail's outcome on it.

Each mail: count the attempt (its own short transaction, before anything can crash);
parse it and read its attachments outside any transaction, within the budget; then run the
pipeline's steps in a transaction that takes the write lock only at its first write, and
record the outcome in it. A step that stops the mail rolls its changes back and the stop is
recorded instead. Any other exception rolls back and leaves the mail marked ``failed``
with the error, for a moderator to retry. A busy or full database leaves the mail new
(spool.Busy) for the loop to try again after a pause.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from sqlite_utils import Database

from mailcircle import db as database
from mailcircle.circle import assignments, circles
from mailcircle.clock import Clock
from mailcircle.db import transaction
from mailcircle.errors import Changed, Outcome
from mailcircle.inbound import drafts, pipeline, spool
from mailcircle.inbound.budget import Budget
from mailcircle.inbound.docx import AttachmentRefused
from mailcircle.inbound.job import Job
from mailcircle.inbound.parse import Mail
from mailcircle.inbound.pipeline import Pipeline
from mailcircle.inbound.spool import Spooled
from mailcircle.inbound.verify import SenderCheck
from mailcircle.outbound import compose

log = logging.getLogger(__name__)


@dataclass
class Attempt:
    """One try at one spooled mail: what is known of it so far."""

    spooled: Spooled
    mail: Mail | None = None  # once parsed
    job: Job | None = None  # once its circle is known


# A mail is set aside as failed when the worker process died on it this many times (over
# its budget, or a crash), or when this many attempts never finished (the whole service
# died each time: kept higher, because a restart under load is usually not the mail's fault).
MAX_CRASHES = 2
MAX_STARTS = 4


class Worker:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        composer: compose.Composer,
        sender_check: SenderCheck | None = None,
        *,
        budget: Budget | None = None,
        give_way: Callable[[], None] = lambda: None,
    ) -> None:
        self.db = db
        # The worker's commits do not wait for the disk (WAL, synchronous=NORMAL): the write
        # lock is let go a sync sooner. A power cut can only undo its latest outcomes, whole
        # (the mail is new again and is processed again); the mail itself was synced by the
        # edge before its 250, and an answer already sent was synced by the sender's commit.
        db.execute("PRAGMA synchronous = NORMAL")
        # Before each write transaction, the worker lets a waiting edge commit first: before
        # the claim, and just before the steps' first write takes the lock.
        self.give_way = give_way
        if isinstance(db, database.CircleDatabase):
            db.before_write = give_way
        self.clock = clock
        self.composer = composer
        self.sender_check = sender_check or SenderCheck()
        self.budget = budget  # per-mail CPU and memory limits, in a worker process of its own
        self.pipeline = Pipeline(db, clock, composer, self.sender_check)

    def process_pending(self, limit: int = 50) -> int:
        """Process waiting mails, oldest first; returns how many were processed."""
        batch = spool.pending(self.db, limit)
        for spooled in batch:
            self.process(spooled)
        return len(batch)

    def process(self, spooled: Spooled) -> str:
        """Run the steps for one mail and record the outcome; returns the new status.

        Raises spool.Busy, leaving the mail new, when the database cannot be written now.
        """
        try:
            if spooled.crashes >= MAX_CRASHES or spooled.started >= MAX_STARTS:
                return self._quarantine(spooled)
            self.give_way()
            spool.claim(self.db, spooled.id, os.getpid())
        except Exception as err:
            if database.transient(err):
                raise spool.Busy(f"inbound #{spooled.id} waits: {err}") from err
            raise
        attempt = Attempt(pipeline.with_null_sender(spooled))
        try:
            try:
                with self.budget.applied() if self.budget else contextlib.nullcontext():
                    status, outcome = self._settle(attempt)
            except Exception as err:  # anything unforeseen: keep the mail, show the error
                if _try_again(err):
                    raise
                status, outcome = self._fail(attempt, err)
        except Exception as err:
            if not _try_again(err):
                raise
            self._unclaim(spooled)
            raise spool.Busy(f"inbound #{spooled.id} waits: {err}") from err
        log.info("inbound #%d %s: %s", spooled.id, status, outcome)
        return status

    def parse(self, attempt: Attempt) -> None:
        """Parse the mail and read an attached draft: slow, so outside any transaction."""
        attempt.mail = drafts.read(attempt.spooled.raw)

    def _settle(self, attempt: Attempt) -> tuple[str, str]:
        spooled = attempt.spooled
        try:
            self.parse(attempt)  # may stop the mail too (a Hold for unreadable MIME)
            assert attempt.mail is not None
            # reading, trimming and composing take no lock: the steps' first write does
            with transaction(self.db, lazy=True):
                earlier = spool.earlier_copy(self.db, spooled)
                job = attempt.job = self.pipeline.start(spooled, attempt.mail, earlier=earlier)
                outcome = self.pipeline.run(job)
                outcome += self.pipeline.finish(job)
                spool.record(self.db, self.clock, spooled.id, spool.DONE, outcome)
            return spool.DONE, outcome
        except (Outcome, AttachmentRefused) as stopped:
            # the steps' changes are rolled back; record why instead
            stopped_job = attempt.job
            if isinstance(stopped, Outcome):
                stop = stopped
            else:
                assert stopped_job is not None  # only a step complains of an attachment
                stop = self.pipeline.unreadable(stopped_job, stopped)
            outcome = stop.reason
            with transaction(self.db, lazy=True):
                if stopped_job is not None:
                    outcome += self.pipeline.stopped(stopped_job, stop)
                spool.record(self.db, self.clock, spooled.id, stop.status, outcome)
            return stop.status, outcome

    def _fail(self, attempt: Attempt, err: Exception) -> tuple[str, str]:
        spooled = attempt.spooled
        if isinstance(err, MemoryError):
            limit = f"{self.budget.memory_mb} MB" if self.budget else "the memory it had"
            outcome = f"could not be processed: it needed more memory than its budget ({limit})"
        else:
            outcome = f"could not be processed: {type(err).__name__}: {err}"
        error = traceback.format_exc()
        log.error("inbound #%d failed: %s", spooled.id, outcome, exc_info=err)
        with transaction(self.db):
            outcome += self._apologize(attempt)
            if isinstance(err, MemoryError):
                outcome += self._tell_moderators(spooled, outcome)
            spool.record(self.db, self.clock, spooled.id, spool.FAILED, outcome, error)
        return spool.FAILED, outcome

    def _apologize(self, attempt: Attempt) -> str:
        """Tell the sender their mail is safe though it could not be processed (if we may)."""
        if attempt.job is None:
            return "; nobody was answered"
        try:
            with transaction(self.db):  # a savepoint: if the apology fails, the record stays
                return self.pipeline.apologize(attempt.job)
        except Exception:
            log.exception("could not queue the apology for inbound #%d", attempt.spooled.id)
            return "; the sender could not be told"

    def _quarantine(self, spooled: Spooled) -> str:
        """A mail the worker died on twice (or never finished) is not tried a third time."""
        cause = spooled.error.strip() or "the worker stopped while processing it"
        outcome = (
            f"set aside after {max(spooled.crashes, spooled.started)} attempts that did not"
            f" finish ({cause}); not tried again until a moderator runs"
            f" `mailcircle inbox retry {spooled.id}`"
        )
        with transaction(self.db):
            outcome += self._tell_moderators(spooled, outcome)
            spool.record(self.db, self.clock, spooled.id, spool.FAILED, outcome, cause)
        log.error("inbound #%d failed: %s", spooled.id, outcome)
        return spool.FAILED

    def _tell_moderators(self, spooled: Spooled, outcome: str) -> str:
        circle = circles.find(self.db, spooled.rcpt_to)
        if circle is None:
            return ""
        told = assignments.tell_moderators(
            self.db,
            self.clock,
            self.composer,
            circle,
            topic=f"Inbound mail #{spooled.id} could not be processed",
            details=f"A mail from {spooled.mail_from or '<>'} to {spooled.rcpt_to}"
            f" ({spooled.size} bytes) {outcome}. It is kept: see it with `mailcircle inbox"
            f" show {spooled.id}`.",
        )
        return f"; {told} moderators were told" if told else ""

    def _unclaim(self, spooled: Spooled) -> None:
        """Give the attempt back (it stopped for the database's reasons, not the mail's)."""
        for pause in (0.0, 0.5, 2.0):
            time.sleep(pause)
            try:
                spool.unclaim(self.db, spooled.id)
                return
            except Exception as err:
                if not database.transient(err):
                    raise
        log.warning("inbound #%d: could not give its attempt back; it counts", spooled.id)


def _try_again(err: Exception) -> bool:
    """Whether the mail should wait and be tried again, not be recorded as failed: the
    database is busy or full, or what it acts on changed while it was read."""
    return database.transient(err) or isinstance(err, Changed)
