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

import logging
import multiprocessing
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailcircle import db as database
from mailcircle.children import (
    Child,
    Shared,
    log_setup,
    scheduler_process,
    send_loop,
    sender_process,
    work_loop,
    worker_process,
)
from mailcircle.clock import Clock, SystemClock
from mailcircle.config import Settings
from mailcircle.inbound import spool
from mailcircle.inbound.imap import ImapPoller
from mailcircle.inbound.process import Worker
from mailcircle.inbound.smtp import EdgeGate, InboundServer
from mailcircle.inbound.verify import SenderCheck
from mailcircle.lease import Lease
from mailcircle.outbound.compose import Composer
from mailcircle.outbound.deliver import Transport, transport_for
from mailcircle.scheduler import Scheduler

log = logging.getLogger(__name__)

_SPAWN = multiprocessing.get_context("spawn")
LOW_DISK_BYTES = 200 * 1024 * 1024  # warn at start when less is free beside the database
CHECKPOINT_SECONDS = 60.0


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
        level = log_setup()
        events = (self._stopping, self._inbox_wake, self._outbox_wake)
        shared = Shared(self.settings, level, os.getpid(), *events, self.poll_seconds, self.gate)
        worker = Child("worker", worker_process, shared, self._charge)
        scheduler = Child("scheduler", scheduler_process, shared)
        sender = Child("sender", sender_process, shared)
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
