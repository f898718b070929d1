"""The processes `mailcircle serve` starts beside its edge: the worker, the scheduler and the
sender, each a loop of its own (in a process of its own with ``isolate``), started again
when it dies; and `poll --once`'s worker run (``process_once``). service.py supervises them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from mailcircle import db as database
from mailcircle import logs
from mailcircle.circle import bounces
from mailcircle.clock import Clock, SystemClock
from mailcircle.config import Settings
from mailcircle.errors import RecipientRefused
from mailcircle.inbound import spool
from mailcircle.inbound.budget import Budget, no_core_dumps
from mailcircle.inbound.process import Worker
from mailcircle.inbound.smtp import EdgeGate
from mailcircle.inbound.verify import SenderCheck
from mailcircle.outbound.compose import Composer
from mailcircle.outbound.deliver import OnRefused, Sender, Transport, transport_for
from mailcircle.outbound.outbox import Outgoing
from mailcircle.scheduler import Scheduler

log = logging.getLogger(__name__)

_SPAWN = multiprocessing.get_context("spawn")
CHILD_NICENESS = 10  # the worker, scheduler and sender yield the CPU to the edge


@dataclass(frozen=True)
class Shared:
    """What each child process is started with (pickled once, when it is spawned)."""

    settings: Settings
    level: tuple[str, str]  # the log level and format
    parent: int  # the pid that started it: when it is gone, so is the child
    stopping: Any  # events shared with the parent
    inbox_wake: Any
    outbox_wake: Any
    poll_seconds: float
    gate: EdgeGate


def work_loop(
    worker: Worker, stopping: Any, inbox_wake: Any, outbox_wake: Any, poll_seconds: float
) -> None:
    """Process the spool until told to stop; a busy or full database, or a mail whose
    circle changed while it was read, is waited out and tried again."""
    pause = 0.0
    while not stopping.is_set():
        inbox_wake.clear()
        try:
            done = worker.process_pending()
            pause = 0.0
        except Exception as err:
            if not (isinstance(err, spool.Busy) or database.transient(err)):
                log.exception("the worker hit an error; it will try again")
            pause = min(max(pause * 2, 0.5), 30.0)
            log.warning("the worker waits (%s); trying again in %.1f s", err, pause)
            outbox_wake.set()  # what was done before it is queued
            stopping.wait(pause)
            continue
        if done:
            outbox_wake.set()
            continue
        inbox_wake.wait(poll_seconds)


def send_loop(
    settings: Settings,
    clock: Clock,
    composer: Composer,
    transport: Transport,
    stopping: Any,
    outbox_wake: Any,
    poll_seconds: float,
) -> None:
    """Deliver what is due until told to stop; woken when the worker queues mail."""
    db = database.connect(settings.database)
    sender = Sender(db, clock, transport, on_refused=bounce_recorder(clock, composer))
    try:
        while not stopping.is_set():
            outbox_wake.clear()
            try:
                if sender.deliver_due():
                    continue  # more may be due already
            except Exception:
                log.exception("the sender hit an error; it will try again")
            outbox_wake.wait(poll_seconds)
            transport.close_idle()
    finally:
        db.close()


def bounce_recorder(clock: Clock, composer: Composer) -> OnRefused:
    """Records a relay's 5xx for a member's address as a bounce against that member."""

    def record(db: Database, mail: Outgoing, err: RecipientRefused) -> str:
        return bounces.refused_by_relay(
            db, clock, composer, mail.circle_id, mail.rcpt_to, mail.id, err.status
        )

    return record


# --- the processes of their own ---------------------------------------------------------


class Child:
    """Runs ``target`` in a process of its own and starts it again when it dies."""

    def __init__(
        self,
        name: str,
        target: Callable[[Shared], None],
        shared: Shared,
        on_death: Callable[[int, str], None] | None = None,
    ) -> None:
        self.name, self.target, self.shared = name, target, shared
        self.stopping = shared.stopping
        self.on_death = on_death

    def run(self) -> None:
        quick_deaths = 0
        settings = self.shared.settings
        while not self.stopping.is_set():
            proc = _SPAWN.Process(
                target=self.target, args=(self.shared,), name=f"mailcircle-{self.name}"
            )
            proc.start()
            began = time.monotonic()
            while proc.is_alive() and not self.stopping.is_set():
                proc.join(0.5)
            if self.stopping.is_set():
                proc.join(35)  # it finishes the mail it is on
                if proc.is_alive():
                    proc.terminate()
                    proc.join(5)
                return
            reason = _death(self.name, proc.exitcode, settings)
            log.error("the %s process stopped: %s; starting it again", self.name, reason)
            if self.on_death is not None and proc.pid is not None:
                self.on_death(proc.pid, reason)
            quick_deaths = quick_deaths + 1 if time.monotonic() - began < 10 else 0
            self.stopping.wait(min(0.1 * 2**quick_deaths, 30.0))


def _death(name: str, code: int | None, settings: Settings) -> str:
    budget = settings.worker
    if code == -signal.SIGXCPU:
        return f"the {name} went over its CPU budget of {budget.mail_cpu_seconds} s for one mail"
    if code is not None and code < 0:
        return f"the {name} was ended by {signal.Signals(-code).name}"
    return f"the {name} exited with status {code}"


class _ChildStop:
    """A child's view of "stop": the service stopping (shared), or SIGTERM sent to this
    process alone (its own), after which it finishes the mail at hand and exits to be
    started again; a signal to one child never stops the others."""

    def __init__(self, shared: Any) -> None:
        self.shared = shared
        self.own = threading.Event()

    def is_set(self) -> bool:
        return bool(self.shared.is_set() or self.own.is_set())

    def set(self) -> None:
        self.own.set()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if left <= 0:
                break
            self.shared.wait(left)
        return self.is_set()


def log_setup() -> tuple[str, str]:
    """This process's log level and format, for the processes it starts."""
    number = logging.getLogger("mailcircle").getEffectiveLevel()
    level = logging.getLevelName(number).lower()
    root = logging.getLogger()
    json_lines = any(isinstance(h.formatter, logs.JsonFormatter) for h in root.handlers)
    return (level if level in logs.LEVELS else "info", "json" if json_lines else "text")


def _become_child(shared: Shared) -> _ChildStop:
    """Die with the parent, write no core files, yield the CPU to the edge, leave Ctrl-C
    to the parent, and on SIGTERM finish the mail at hand, then stop."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != shared.parent:
        os._exit(0)
    no_core_dumps()
    # The process that listens goes first for the CPU too: the edge answers at once even
    # on a small machine where the worker could use every cycle.
    with contextlib.suppress(OSError):
        os.nice(CHILD_NICENESS)
    stopping = _ChildStop(shared.stopping)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    logs.setup(*shared.level)
    return stopping


def _child_worker(settings: Settings, **options: Any) -> tuple[Any, Worker]:
    """A worker process's database and Worker: its own clock, budget and sender check."""
    clock = SystemClock()
    db = database.connect(settings.database)
    budget = Budget(settings.worker.mail_cpu_seconds, settings.worker.mail_memory_mb)
    check = SenderCheck(settings.inbound.trusted_authserv_ids)
    return db, Worker(db, clock, Composer(clock), check, budget=budget, **options)


def worker_process(shared: Shared) -> None:
    stopping: Any = _become_child(shared)  # an Event to the loops it is given to
    db, worker = _child_worker(shared.settings, give_way=shared.gate.give_way)
    try:
        work_loop(worker, stopping, shared.inbox_wake, shared.outbox_wake, shared.poll_seconds)
    finally:
        db.close()


def scheduler_process(shared: Shared) -> None:
    stopping: Any = _become_child(shared)  # an Event to the loops it is given to
    clock = SystemClock()
    on_queued = shared.outbox_wake.set
    Scheduler(shared.settings.database, clock, Composer(clock), on_queued=on_queued).run(stopping)


def sender_process(shared: Shared) -> None:
    stopping: Any = _become_child(shared)  # an Event to the loops it is given to
    transport = transport_for(shared.settings.outbound)
    clock = SystemClock()
    try:
        send_loop(
            shared.settings,
            clock,
            Composer(clock),
            transport,
            stopping,
            shared.outbox_wake,
            shared.poll_seconds,
        )
    finally:
        transport.close()


def process_once(settings: Settings) -> int:
    """Process what waits in the spool now, in a worker process of its own within the
    budget, starting it again if a mail ends it (`poll --once`). Returns mails processed."""
    db = database.connect(settings.database)
    try:
        before = spool.settled(db)
        stopping, inbox, outbox = _SPAWN.Event(), _SPAWN.Event(), _SPAWN.Event()
        gate = EdgeGate()
        args = (Shared(settings, log_setup(), os.getpid(), stopping, inbox, outbox, 0.0, gate),)
        for _ in range(100):
            if not spool.pending(db, 1):
                break
            proc = _SPAWN.Process(target=_worker_until_idle, args=args, name="mailcircle-worker")
            proc.start()
            proc.join()
            if proc.exitcode == 3:  # the database stayed busy: the next run takes it
                break
            if proc.exitcode != 0 and proc.pid is not None:
                reason = _death("worker", proc.exitcode, settings)
                log.error("the worker process stopped: %s", reason)
                spool.crashed(db, proc.pid, reason)
        return spool.settled(db) - before
    finally:
        db.close()


def _worker_until_idle(shared: Shared) -> None:
    _become_child(shared)
    db, worker = _child_worker(shared.settings)
    try:
        for pause in (0.0, 1.0, 2.0, 5.0, 10.0):
            time.sleep(pause)
            try:
                while worker.process_pending():
                    pass
                return
            except spool.Busy as busy:
                log.warning("%s", busy)
        raise SystemExit(3)
    finally:
        db.close()
