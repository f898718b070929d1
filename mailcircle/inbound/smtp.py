"""The network edge: an aiosmtpd handler for SMTP and LMTP.

It does two things only. At RCPT it refuses addresses that are not a circle's, with a
sentence a human understands. At DATA it commits the raw bytes and envelope to the spool
and only then answers 250 (over LMTP, one answer per recipient). Everything else happens
later, in the worker.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

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


class SpoolHandler:
    """aiosmtpd handler: refuse strangers at RCPT, commit to the spool at DATA."""

    def __init__(
        self,
        db_path: Path,
        clock: Clock,
        *,
        source: str,
        on_spooled: Callable[[], None] = lambda: None,
    ) -> None:
        self.source = source
        self.clock = clock
        self.on_spooled = on_spooled
        # The single thread that touches the database for this edge: lookups and commits
        # happen off the event loop, one at a time, on a connection of their own.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"{source}-spool")
        self._db = self._executor.submit(database.connect, db_path).result()

    async def _in_db_thread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

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
        circle = await self._in_db_thread(circles.find, self._db, address)
        if circle is None:
            log.info("refused RCPT %s from %s: no such circle", address, session.peer)
            return NO_SUCH_CIRCLE.format(address=address)
        envelope.rcpt_tos.append(address)
        circle_ids: dict[str, int] = getattr(envelope, "circle_ids", {})
        circle_ids[address] = circle.id
        envelope.circle_ids = circle_ids  # type: ignore[attr-defined]
        return OK_RCPT

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        circle_ids: dict[str, int] = getattr(envelope, "circle_ids", {})
        recipients = [(rcpt, circle_ids.get(rcpt)) for rcpt in envelope.rcpt_tos]
        try:
            ids = await self._in_db_thread(
                spool.store,
                self._db,
                self.clock,
                source=self.source,
                peer=_peer_text(session.peer),
                mail_from=envelope.mail_from or "",
                recipients=recipients,
                raw=raw,
            )
        except Exception:
            log.exception("could not spool a mail from %s", envelope.mail_from)
            return self._per_recipient(TRY_LATER, len(recipients))
        log.info(
            "spooled #%s from <%s> to %s (%d bytes)",
            ",".join(map(str, ids)),
            envelope.mail_from,
            ", ".join(envelope.rcpt_tos),
            len(raw),
        )
        self.on_spooled()
        return self._per_recipient(OK_ACCEPTED, len(recipients))

    def _per_recipient(self, status: str, count: int) -> str:
        # LMTP (RFC 2033) answers DATA once per accepted recipient; aiosmtpd pushes our
        # string as is, so several lines joined by CRLF become several replies.
        return "\r\n".join([status] * count) if self.source == "lmtp" else status

    def close(self) -> None:
        self._executor.submit(self._db.close).result()
        self._executor.shutdown()


def _peer_text(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer or "")


class _EdgeController(Controller):
    def __init__(
        self, handler: SpoolHandler, listen: HostPort, server_class: type[SMTP], **kw: Any
    ):
        super().__init__(handler, hostname=listen.host, port=listen.port, **kw)
        self.server_class = server_class

    def factory(self) -> SMTP:
        return self.server_class(self.handler, **self.SMTP_kwargs)


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
        on_spooled: Callable[[], None] = lambda: None,
    ) -> None:
        self.listen = listen
        self.protocol = "lmtp" if lmtp else "smtp"
        self.handler = SpoolHandler(db_path, clock, source=self.protocol, on_spooled=on_spooled)
        self.controller = _EdgeController(
            self.handler,
            listen,
            LMTP if lmtp else SMTP,
            data_size_limit=max_message_bytes,
            # getfqdn() may wait on DNS; the host name is enough for a greeting.
            server_hostname=socket.gethostname(),
            ident="mailcircle",
        )

    def start(self) -> None:
        self.controller.start()
        log.info("%s listening on %s", self.protocol.upper(), self.listen)

    def stop(self) -> None:
        self.controller.stop()
        self.handler.close()
