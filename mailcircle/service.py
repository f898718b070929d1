"""`mailcircle serve` and `poll`: the edge, the worker, the scheduler and the sender.

The process first takes the database's lease (one worker and one sender per database,
whatever the command or host), then listens, and only then starts processing, so a mail
that cannot be processed never keeps the edge from answering.

With ``isolate`` (what `serve` and `poll` use), the worker, the scheduler and the sender
each run in a process of their own, started and watched by this one: parsing, trimming,
composing, planning and delivering never share an interpreter with the SMTP event loop,
and each mail is processed within a budget of CPU and memory (`mailcircle.inbound.budget`).
The worker lets the edge commit first when both want the write lock (`EdgeGate`). When
the worker process dies, the mail it was on is charged with the death and the worker
starts again; a mail charged twice is set aside as failed and the moderators are told.
Without ``isolate`` (tests driving a fake clock) the same loops run as threads here.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
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
from mailcircle.inbound.imap import ImapPoller
from mailcircle.inbound.process import Worker
from mailcircle.inbound.smtp import EdgeGate, InboundServer
from mailcircle.inbound.verify import SenderCheck
from mailcircle.lease import Lease
from mailcircle.outbound.compose import Composer
from mailcircle.outbound.deliver import OnRefused, Sender, Transport, transport_for
from mailcircle.outbound.outbox import Outgoing
from mailcircle.scheduler import Scheduler

log = logging.getLogger(__name__)

_SPAWN = multiprocessing.get_context("spawn")
LOW_DISK_BYTES = 200 * 1024 * 1024  # warn at start when less is free beside the database
CHECKPOINT_SECONDS = 60.0
CHILD_NICENESS = 10  # the worker, scheduler and sender yield the CPU to the edge


class Service:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        transport: Transport | None = None,
        composer: Composer | None = None,
        poll_seconds: float = 5.0,
        listen: bool = True,
        imap: bool = False,
        sender_check: SenderCheck | None = None,
        isolate: bool = False,
        command: str = "serve",
    ) -> None:
        self.settings = settings
        self.sender_check = sender_check or SenderCheck(settings.inbound.trusted_authserv_ids)
        self.clock = clock or SystemClock()
        self.transport = transport or transport_for(settings.outbound)
        self.composer = composer or Composer(self.clock)
        self.poll_seconds = poll_seconds
        self.listen = listen  # run the SMTP/LMTP servers (`serve`)
        self.imap = imap  # watch the IMAP mailbox (`poll`)
        self.isolate = isolate  # worker and scheduler in processes of their own
        self.command = command
        self.poller: ImapPoller | None = None
        self.lease: Lease | None = None
        self.lost = threading.Event()  # set when another process took the lease
        events: Any = _SPAWN if isolate else threading
        self._stopping = events.Event()
        self._inbox_wake = events.Event()
        self._outbox_wake = events.Event()
        self._threads: list[threading.Thread] = []
        self.servers: list[InboundServer] = []
        self.gate = EdgeGate()  # the worker lets the edge commit first

    def start(self) -> None:
        database.connect(self.settings.database).close()  # schema up to date before anything
        self.lease = Lease(database.connect(self.settings.database), self.command)
        try:
            self.lease.acquire()
        except BaseException:
            self.lease.db.close()
            self.lease = None
            raise
        try:
            warning = disk_warning(self.settings.database)
            if warning:
                log.warning("%s", warning)
            self._start_edges()  # listen first: nothing below can keep the edge from answering
            self._start_processing()
            self.lease.keep(on_lost=self._lease_lost)
            self._spawn("checkpoint", self._checkpoint)
        except BaseException:
            self.stop()
            raise

    def _start_edges(self) -> None:
        inbound = self.settings.inbound
        servers = ((inbound.smtp, False), (inbound.lmtp, True)) if self.listen else ()
        for listen, lmtp in servers:
            if listen is None:
                continue
            server = InboundServer(
                self.settings.database,
                self.clock,
                listen,
                lmtp=lmtp,
                max_message_bytes=inbound.max_message_bytes,
                max_recipients=inbound.max_recipients,
                sender_bytes_per_hour=inbound.sender_bytes_per_hour,
                on_spooled=self._inbox_wake.set,
                gate=self.gate,
            )
            try:
                server.start()
            except Exception:
                server.handler.close()
                raise
            self.servers.append(server)
        if self.imap:
            self.poller = ImapPoller(
                self.settings.imap,
                self.settings.database,
                self.clock,
                max_message_bytes=inbound.max_message_bytes,
                on_spooled=self._inbox_wake.set,
            )
            poller = self.poller
            self._spawn("imap", lambda: poller.run(self._stopping))

    def _start_processing(self) -> None:
        if not self.isolate:
            self._spawn("sender", self._send)
            self._spawn("worker", self._work)
            in_thread = Scheduler(
                self.settings.database, self.clock, self.composer, on_queued=self._outbox_wake.set
            )
            self._spawn("scheduler", lambda: in_thread.run(self._stopping))
            return
        level = _log_setup()
        events = (self._stopping, self._inbox_wake, self._outbox_wake)
        args = (self.settings, level, os.getpid(), *events, self.poll_seconds, self.gate)
        worker = _Child("worker", _worker_process, args, self._stopping, self._charge)
        scheduler = _Child("scheduler", _scheduler_process, args, self._stopping)
        sender = _Child("sender", _sender_process, args, self._stopping)
        self._spawn("worker-watch", worker.run)
        self._spawn("scheduler-watch", scheduler.run)
        self._spawn("sender-watch", sender.run)

    def _charge(self, pid: int, reason: str) -> None:
        """The worker process died: the mail it was on carries the death."""
        db = database.connect(self.settings.database)
        try:
            for pause in (0.0, 1.0, 5.0, 15.0):
                time.sleep(pause)
                try:
                    if spool.crashed(db, pid, reason):
                        log.error("inbound mail charged: %s", reason)
                    return
                except Exception as err:
                    if not database.transient(err):
                        raise
            log.error("could not charge the mail the worker died on: %s", reason)
        finally:
            db.close()

    def _lease_lost(self) -> None:
        self.lost.set()
        self._stopping.set()
        self._inbox_wake.set()
        self._outbox_wake.set()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()
        self._stopping.set()
        self._inbox_wake.set()
        self._outbox_wake.set()
        for thread in self._threads:
            thread.join(timeout=40)
        self._threads.clear()
        self.transport.close()
        if self.lease is not None:
            if not self.lost.is_set():
                self.lease.release()
            self.lease.db.close()
            self.lease = None

    def _spawn(self, name: str, loop: Callable[[], None]) -> None:
        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _work(self) -> None:
        db = database.connect(self.settings.database)
        try:
            worker = Worker(
                db, self.clock, self.composer, self.sender_check, give_way=self.gate.give_way
            )
            work_loop(
                worker, self._stopping, self._inbox_wake, self._outbox_wake, self.poll_seconds
            )
        finally:
            db.close()

    def _send(self) -> None:
        send_loop(
            self.settings,
            self.clock,
            self.composer,
            self.transport,
            self._stopping,
            self._outbox_wake,
            self.poll_seconds,
        )

    def _checkpoint(self) -> None:
        """Give the WAL's disk space back now and then (it only grows otherwise), so a disk
        that filled up has room again once the cause is gone."""
        db = database.connect(self.settings.database)
        try:
            while not self._stopping.wait(CHECKPOINT_SECONDS):
                try:
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                except Exception as err:  # busy or full: the next one
                    log.info("WAL checkpoint skipped: %s", err)
        finally:
            db.close()


def work_loop(
    worker: Worker, stopping: Any, inbox_wake: Any, outbox_wake: Any, poll_seconds: float
) -> None:
    """Process the spool until told to stop; a busy or full database is waited out."""
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
            log.warning("the database is busy or full (%s); trying again in %.1f s", err, pause)
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


def disk_warning(db_path: Path) -> str:
    """A sentence when the disk holding the database is nearly full ('' otherwise)."""
    try:
        usage = shutil.disk_usage(Path(db_path).resolve().parent)
    except OSError:
        return ""
    if usage.free < min(LOW_DISK_BYTES, usage.total // 10):
        return (
            f"the disk holding {db_path} has only {usage.free // (1024 * 1024)} MB free;"
            " when it is full, mail is refused with 451 until space is freed"
        )
    return ""


# --- the processes of their own ---------------------------------------------------------


class _Child:
    """Runs ``target`` in a process of its own and starts it again when it dies."""

    def __init__(
        self,
        name: str,
        target: Callable[..., None],
        args: tuple[Any, ...],
        stopping: Any,
        on_death: Callable[[int, str], None] | None = None,
    ) -> None:
        self.name, self.target, self.args = name, target, args
        self.stopping = stopping
        self.on_death = on_death

    def run(self) -> None:
        quick_deaths = 0
        settings: Settings = self.args[0]
        while not self.stopping.is_set():
            proc = _SPAWN.Process(
                target=self.target, args=self.args, name=f"mailcircle-{self.name}"
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


def _log_setup() -> tuple[str, str]:
    """This process's log level and format, for the processes it starts."""
    number = logging.getLogger("mailcircle").getEffectiveLevel()
    level = logging.getLevelName(number).lower()
    root = logging.getLogger()
    json_lines = any(isinstance(h.formatter, logs.JsonFormatter) for h in root.handlers)
    return (level if level in logs.LEVELS else "info", "json" if json_lines else "text")


def _become_child(level: tuple[str, str], parent: int, shared_stop: Any) -> _ChildStop:
    """Die with the parent, write no core files, yield the CPU to the edge, leave Ctrl-C
    to the parent, and on SIGTERM finish the mail at hand, then stop."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(0)
    no_core_dumps()
    # The process that listens goes first for the CPU too: the edge answers at once even
    # on a small machine where the worker could use every cycle.
    with contextlib.suppress(OSError):
        os.nice(CHILD_NICENESS)
    stopping = _ChildStop(shared_stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    logs.setup(*level)
    return stopping


def _worker_process(
    settings: Settings,
    level: tuple[str, str],
    parent: int,
    stopping: Any,
    inbox_wake: Any,
    outbox_wake: Any,
    poll_seconds: float,
    gate: EdgeGate,
) -> None:
    stopping = _become_child(level, parent, stopping)
    clock = SystemClock()
    db = database.connect(settings.database)
    budget = Budget(settings.worker.mail_cpu_seconds, settings.worker.mail_memory_mb)
    check = SenderCheck(settings.inbound.trusted_authserv_ids)
    worker = Worker(db, clock, Composer(clock), check, budget=budget, give_way=gate.give_way)
    try:
        work_loop(worker, stopping, inbox_wake, outbox_wake, poll_seconds)
    finally:
        db.close()


def _scheduler_process(
    settings: Settings,
    level: tuple[str, str],
    parent: int,
    stopping: Any,
    inbox_wake: Any,
    outbox_wake: Any,
    poll_seconds: float,
    gate: EdgeGate,
) -> None:
    stopping = _become_child(level, parent, stopping)
    clock = SystemClock()
    Scheduler(settings.database, clock, Composer(clock), on_queued=outbox_wake.set).run(stopping)


def _sender_process(
    settings: Settings,
    level: tuple[str, str],
    parent: int,
    stopping: Any,
    inbox_wake: Any,
    outbox_wake: Any,
    poll_seconds: float,
    gate: EdgeGate,
) -> None:
    stopping = _become_child(level, parent, stopping)
    transport = transport_for(settings.outbound)
    clock = SystemClock()
    try:
        send_loop(settings, clock, Composer(clock), transport, stopping, outbox_wake, poll_seconds)
    finally:
        transport.close()


def process_once(settings: Settings) -> int:
    """Process what waits in the spool now, in a worker process of its own within the
    budget, starting it again if a mail ends it (`poll --once`). Returns mails processed."""
    db = database.connect(settings.database)
    try:
        before = _settled(db)
        stopping, inbox, outbox = _SPAWN.Event(), _SPAWN.Event(), _SPAWN.Event()
        gate = EdgeGate()
        args = (
            settings,
            _log_setup(),
            os.getpid(),
            stopping,
            inbox,
            outbox,
            0.0,
            gate,
        )
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
        return _settled(db) - before
    finally:
        db.close()


def _settled(db: Any) -> int:
    return int(
        db.execute("SELECT COUNT(*) FROM spool WHERE status != ?", [spool.NEW]).fetchone()[0]
    )


def _worker_until_idle(
    settings: Settings,
    level: tuple[str, str],
    parent: int,
    stopping: Any,
    inbox_wake: Any,
    outbox_wake: Any,
    poll_seconds: float,
    gate: EdgeGate,
) -> None:
    stopping = _become_child(level, parent, stopping)
    clock = SystemClock()
    db = database.connect(settings.database)
    budget = Budget(settings.worker.mail_cpu_seconds, settings.worker.mail_memory_mb)
    check = SenderCheck(settings.inbound.trusted_authserv_ids)
    worker = Worker(db, clock, Composer(clock), check, budget=budget)
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
