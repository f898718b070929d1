"""The network edge: an aiosmtpd handler for SMTP and LMTP.

It does two things only. At RCPT it refuses addresses that are not a circle's, with a
sentence a human understands. At DATA it commits the raw bytes and envelope to the spool
and only then answers 250 (over LMTP, one answer per recipient). Everything else happens
later, in the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import queue
import re
import socket
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailcircle import addresses
from mailcircle import db as database
from mailcircle.circle import circles
from mailcircle.clock import Clock
from mailcircle.config import HostPort
from mailcircle.inbound import spool

log = logging.getLogger(__name__)

# Reply codes, named so tests and code read like the protocol.
OK_RCPT = "250 2.1.5 OK"
OK_ACCEPTED = "250 2.0.0 Accepted: the circle has your message"
NO_SUCH_CIRCLE = (
    "550 5.1.1 <{address}>: there is no writing circle at this address; "
    "check the spelling, or ask your circle's moderator for its address"
)
BAD_ADDRESS = "553 5.1.3 <{address}>: that is not a valid email address"
TRY_LATER = "451 4.3.0 The circle could not store your message just now; please try again later"
TOO_MANY_RECIPIENTS = (
    "452 4.5.3 Too many recipients: the circle takes at most {limit} of its addresses in one"
    " message; send the rest in another message"
)
SENDER_OVER_QUOTA = (
    "452 4.3.1 <{sender}> has sent the circle more than it stores for one sender in an hour;"
    " please try again later"
)


class EdgeGate:
    """How many edge commits are waiting for the write lock, shared with the worker process.

    The worker looks before each of its write transactions and lets a waiting edge go
    first (for a moment at most), so accepting mail does not queue behind processing it.
    """

    def __init__(self) -> None:
        self._waiting = multiprocessing.get_context("spawn").Value("i", 0)

    def __enter__(self) -> EdgeGate:
        with self._waiting.get_lock():
            self._waiting.value += 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._waiting.get_lock():
            self._waiting.value -= 1

    def give_way(self, at_most: float = 0.05) -> None:
        """Wait while the edge is waiting to commit, ``at_most`` seconds in all."""
        deadline = time.monotonic() + at_most
        while self._waiting.value > 0 and time.monotonic() < deadline:
            time.sleep(0.0005)


class GroupCommitter:
    """The one thread that commits accepted mail to the spool.

    Mails that arrive while it is committing wait and go into the next transaction
    together, so under load many mails share one disk sync (group commit). Each sender's
    future is settled only after the commit holding its mail returns.
    """

    MAX_BATCH = 64

    def __init__(
        self, db_path: Path, clock: Clock, name: str, gate: EdgeGate | None = None
    ) -> None:
        self.clock = clock
        self.gate = gate
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._db = database.connect(db_path)
        # Wait for the write lock here, not in SQLite's busy handler, whose sleeps grow to
        # 100 ms: the worker gives way while the edge waits, so the lock is free at once.
        self._db.execute("PRAGMA busy_timeout = 0")
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    async def store(self, arrival: spool.Arrival) -> list[int]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[int]] = loop.create_future()
        self._queue.put(_Pending(arrival, future, loop))
        return await future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            try:
                with self.gate or contextlib.nullcontext():
                    results: list[list[int]] | Exception = self._store(
                        [pending.arrival for pending in batch]
                    )
            except Exception as err:  # nothing in the batch was committed: all hear 451
                log.exception("could not commit %d mails to the spool", len(batch))
                results = err
            # One wake-up of the event loop per batch, not one per mail.
            settled: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any]]] = {}
            for index, pending in enumerate(batch):
                outcome = results if isinstance(results, Exception) else results[index]
                settled.setdefault(pending.loop, []).append((pending.future, outcome))
            for loop, outcomes in settled.items():
                loop.call_soon_threadsafe(_settle_all, outcomes)
        self._db.close()

    def _store(self, arrivals: list[spool.Arrival]) -> list[list[int]]:
        """Commit, waiting for the write lock up to the usual busy timeout."""
        began = time.monotonic()
        while True:
            try:
                return spool.store_many(self._db, self.clock, arrivals)
            except sqlite3.OperationalError as err:
                waited = time.monotonic() - began
                if "locked" not in str(err) or waited > database.BUSY_TIMEOUT_MS / 1000:
                    raise
                time.sleep(0.0005 if waited < 0.05 else 0.005)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)


@dataclass
class _Pending:
    arrival: spool.Arrival
    future: asyncio.Future[list[int]]
    loop: asyncio.AbstractEventLoop


def _settle_all(outcomes: list[tuple[asyncio.Future[list[int]], list[int] | Exception]]) -> None:
    for future, outcome in outcomes:
        _settle(future, outcome)


def _settle(future: asyncio.Future[list[int]], outcome: list[int] | Exception) -> None:
    if future.cancelled():  # the client went away; its mail is committed all the same
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class CircleDirectory:
    """Which addresses are circles', for RCPT. Circles once found are remembered by their
    own address, so poets+c-TOKEN@ (a new token each time) needs no query; an address whose
    circle is not remembered is looked up afresh, so a circle created a moment ago is found."""

    def __init__(self, db_path: Path) -> None:
        self._db = database.connect(db_path)
        self._known: dict[str, tuple[int, str]] = {}  # circle address -> id, its separator

    def circle_id(self, address: str) -> int | None:
        for base, separator in addresses.candidates(address):
            if "+" in base.partition("@")[0]:
                continue  # a circle's own address never holds a "+"
            known = self._known.get(base)
            if known is not None and separator in ("", "+", known[1]):
                return known[0]
            break  # the first that could be a circle is not known: ask the database
        circle = circles.find(self._db, address)
        if circle is None:
            return None
        if len(self._known) > 10_000:  # stay small, whatever is asked
            self._known.clear()
        self._known[circle.address] = (circle.id, circle.config.address_separator)
        return circle.id

    def close(self) -> None:
        self._db.close()


class SpoolHandler:
    """aiosmtpd handler: refuse strangers at RCPT, commit to the spool at DATA."""

    def __init__(
        self,
        db_path: Path,
        clock: Clock,
        *,
        source: str,
        on_spooled: Callable[[], None] = lambda: None,
        max_recipients: int = 20,
        sender_bytes_per_hour: int = 268_435_456,
        gate: EdgeGate | None = None,
    ) -> None:
        self.source = source
        self.on_spooled = on_spooled
        self.max_recipients = max_recipients
        self.quota = SenderQuota(sender_bytes_per_hour)
        self.directory = CircleDirectory(db_path)
        self.committer = GroupCommitter(db_path, clock, name=f"{source}-spool", gate=gate)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if "@" not in address:
            return BAD_ADDRESS.format(address=address)
        if len(envelope.rcpt_tos) >= self.max_recipients:  # RFC 5321 4.5.3.1.10: 452
            return TOO_MANY_RECIPIENTS.format(limit=self.max_recipients)
        circle_id = self.directory.circle_id(address)
        if circle_id is None:
            log.info("refused RCPT %s from %s: no such circle", address, session.peer)
            return NO_SUCH_CIRCLE.format(address=address)
        envelope.rcpt_tos.append(address)
        circle_ids: dict[str, int] = getattr(envelope, "circle_ids", {})
        circle_ids[address] = circle_id
        envelope.circle_ids = circle_ids  # type: ignore[attr-defined]
        return OK_RCPT

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        circle_ids: dict[str, int] = getattr(envelope, "circle_ids", {})
        arrival = spool.Arrival(
            source=self.source,
            peer=_peer_text(session.peer),
            mail_from=envelope.mail_from or "",
            recipients=tuple((rcpt, circle_ids.get(rcpt)) for rcpt in envelope.rcpt_tos),
            raw=raw,
        )
        if not self.quota.take(arrival.mail_from, len(raw) * len(arrival.recipients)):
            log.warning("refused DATA from <%s>: over its hourly quota", arrival.mail_from)
            sender = arrival.mail_from
            return self._per_recipient(
                SENDER_OVER_QUOTA.format(sender=sender), len(arrival.recipients)
            )
        try:
            ids = await self.committer.store(arrival)
        except Exception:
            return self._per_recipient(TRY_LATER, len(arrival.recipients))
        log.debug(
            "spooled #%s from <%s> to %s (%d bytes)",
            ",".join(map(str, ids)),
            envelope.mail_from,
            ", ".join(envelope.rcpt_tos),
            len(raw),
        )
        self.on_spooled()
        return self._per_recipient(OK_ACCEPTED, len(arrival.recipients))

    def _per_recipient(self, status: str, count: int) -> str:
        # LMTP (RFC 2033) answers DATA once per accepted recipient; aiosmtpd pushes our
        # string as is, so several lines joined by CRLF become several replies.
        return "\r\n".join([status] * count) if self.source == "lmtp" else status

    def close(self) -> None:
        self.committer.close()
        self.directory.close()


class SenderQuota:
    """Bytes stored per envelope sender over the last hour, so one sender cannot fill the
    disk. Kept in memory: a restart forgets it, which errs on the side of taking mail."""

    WINDOW = 3600.0

    def __init__(self, bytes_per_hour: int) -> None:
        self.limit = bytes_per_hour
        self._taken: dict[str, deque[tuple[float, int]]] = {}
        self._totals: dict[str, int] = {}

    def take(self, sender: str, size: int) -> bool:
        """Count ``size`` bytes for ``sender``; False (nothing counted) if over the limit."""
        now = time.monotonic()
        sender = sender.lower()
        if len(self._taken) > 10_000:
            self._forget(now)
        taken = self._taken.setdefault(sender, deque())
        total = self._totals.get(sender, 0)
        while taken and taken[0][0] < now - self.WINDOW:
            total -= taken.popleft()[1]
        if total + size > self.limit:
            self._totals[sender] = total
            return False
        taken.append((now, size))
        self._totals[sender] = total + size
        return True

    def _forget(self, now: float) -> None:
        for sender in [s for s, q in self._taken.items() if not q or q[-1][0] < now - self.WINDOW]:
            del self._taken[sender]
            self._totals.pop(sender, None)


def _peer_text(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer or "")


# A path as nearly every client writes it, <dot-atom@dot-atom> and then its parameters:
# what EdgeSMTP reads without aiosmtpd's header parser.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(
    rf"<({_ATOM}(?:\.{_ATOM})*@{_ATOM}(?:\.{_ATOM})*)>(?:[ \t]+(?![ \t(])([ -~\t]*))?[ \t]*\Z"
)


class EdgeSMTP(SMTP):
    """aiosmtpd's SMTP, reading MAIL and RCPT paths faster.

    aiosmtpd reads every path with the email package's full address parser, and defines
    a class each time it does: about 45 µs a path. A plain path is read here with one
    regex instead (0.6 µs; the edge's CPU per mail fell by a fifth), to the very same result
    (tests/test_smtp_edge.py compares the two on thousands of paths, odd ones included);
    any other path (quoted, commented, routed, non-ASCII, <>) still goes to aiosmtpd.
    """

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        plain = _PLAIN_PATH.match(arg)
        if plain is None:
            return super()._getaddr(arg)
        address = plain.group(1)
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, plain.group(2) or ""


class EdgeLMTP(EdgeSMTP, LMTP):
    """aiosmtpd's LMTP with the same reading of paths."""


class _EdgeController(Controller):
    def __init__(
        self, handler: SpoolHandler, listen: HostPort, server_class: type[SMTP], **kw: Any
    ):
        super().__init__(handler, hostname=listen.host, port=listen.port, **kw)
        self.server_class = server_class

    def factory(self) -> SMTP:
        return self.server_class(self.handler, **self.SMTP_kwargs)


def edge_loop() -> asyncio.AbstractEventLoop:
    """The edge's event loop: uvloop's where it is installed (a fifth less CPU per accepted
    mail than asyncio's own, measured with bench/inbound.py), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class InboundServer:
    """One listening SMTP or LMTP server that spools what it accepts."""

    def __init__(
        self,
        db_path: Path,
        clock: Clock,
        listen: HostPort,
        *,
        lmtp: bool = False,
        max_message_bytes: int,
        max_recipients: int = 20,
        sender_bytes_per_hour: int = 268_435_456,
        on_spooled: Callable[[], None] = lambda: None,
        gate: EdgeGate | None = None,
    ) -> None:
        self.listen = listen
        self.protocol = "lmtp" if lmtp else "smtp"
        self.handler = SpoolHandler(
            db_path,
            clock,
            source=self.protocol,
            on_spooled=on_spooled,
            max_recipients=max_recipients,
            sender_bytes_per_hour=sender_bytes_per_hour,
            gate=gate,
        )
        self.controller = _EdgeController(
            self.handler,
            listen,
            EdgeLMTP if lmtp else EdgeSMTP,
            data_size_limit=max_message_bytes,
            # getfqdn() may wait on DNS; the host name is enough for a greeting.
            server_hostname=socket.gethostname(),
            ident="mailcircle",
            loop=edge_loop(),
        )

    def start(self) -> None:
        self.controller.start()
        loop = type(self.controller.loop).__module__.partition(".")[0]
        log.info("%s listening on %s (%s event loop)", self.protocol.upper(), self.listen, loop)

    def stop(self) -> None:
        self.controller.stop()
        self.handler.close()
