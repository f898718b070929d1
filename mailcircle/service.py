"""`mailcircle serve`: the SMTP/LMTP edge, the worker and the outbox sender in one process.

Each part runs in its own thread on its own database connection. The edge wakes the worker
when it has spooled a mail; the worker wakes the sender when it has queued one. Both also
look on their own every few seconds, so work left by a crash or another process is found.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlite_utils import Database

from mailcircle import db as database
from mailcircle.circle import bounces
from mailcircle.clock import Clock, SystemClock
from mailcircle.config import Settings
from mailcircle.errors import RecipientRefused
from mailcircle.inbound.imap import ImapPoller
from mailcircle.inbound.process import Worker
from mailcircle.inbound.smtp import InboundServer
from mailcircle.inbound.verify import SenderCheck
from mailcircle.outbound.compose import Composer
from mailcircle.outbound.deliver import OnRefused, Sender, Transport, transport_for
from mailcircle.outbound.outbox import Outgoing
from mailcircle.scheduler import Scheduler

log = logging.getLogger(__name__)


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
    ) -> None:
        self.settings = settings
        self.sender_check = sender_check or SenderCheck(settings.inbound.trusted_authserv_ids)
        self.clock = clock or SystemClock()
        self.transport = transport or transport_for(settings.outbound)
        self.composer = composer or Composer(self.clock)
        self.poll_seconds = poll_seconds
        self.listen = listen  # run the SMTP/LMTP servers (`serve`)
        self.imap = imap  # watch the IMAP mailbox (`poll`)
        self.poller: ImapPoller | None = None
        self._stopping = threading.Event()
        self._inbox_wake = threading.Event()
        self._outbox_wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self.servers: list[InboundServer] = []

    def start(self) -> None:
        database.connect(self.settings.database).close()  # schema up to date before anything
        self._spawn("worker", self._work)
        self._spawn("sender", self._send)
        scheduler = Scheduler(
            self.settings.database, self.clock, self.composer, on_queued=self._outbox_wake.set
        )
        self._spawn("scheduler", lambda: scheduler.run(self._stopping))
        inbound = self.settings.inbound
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
                on_spooled=self._inbox_wake.set,
            )
            try:
                server.start()
            except Exception:
                server.handler.close()
                self.stop()
                raise
            self.servers.append(server)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()
        self._stopping.set()
        self._inbox_wake.set()
        self._outbox_wake.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()
        self.transport.close()

    def _spawn(self, name: str, loop: Callable[[], None]) -> None:
        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _work(self) -> None:
        db = database.connect(self.settings.database)
        worker = Worker(db, self.clock, self.composer, self.sender_check)
        try:
            while not self._stopping.is_set():
                try:
                    done = worker.process_pending()
                except Exception:  # e.g. the database is busy for too long: try again soon
                    log.exception("the worker hit an error; it will try again")
                    done = 0
                if done:
                    self._outbox_wake.set()
                    continue
                self._inbox_wake.wait(self.poll_seconds)
                self._inbox_wake.clear()
        finally:
            db.close()

    def _send(self) -> None:
        db = database.connect(self.settings.database)
        sender = Sender(
            db, self.clock, self.transport, on_refused=bounce_recorder(self.clock, self.composer)
        )
        try:
            while not self._stopping.is_set():
                try:
                    if sender.deliver_due():
                        continue  # more may be due already
                except Exception:
                    log.exception("the sender hit an error; it will try again")
                self._outbox_wake.wait(self.poll_seconds)
                self._outbox_wake.clear()
                self.transport.close_idle()
        finally:
            db.close()


def bounce_recorder(clock: Clock, composer: Composer) -> OnRefused:
    """Records a relay's 5xx for a member's address as a bounce against that member."""

    def record(db: Database, mail: Outgoing, err: RecipientRefused) -> str:
        return bounces.refused_by_relay(
            db, clock, composer, mail.circle_id, mail.rcpt_to, mail.id, err.status
        )

    return record
