"""The lease: exactly one process works a database's spool and outbox.

`serve`, `poll` and `poll --once` take it at start. It is a row in the database itself,
so it holds across hosts sharing the disk: holder, host, pid, command, since when, and a
heartbeat renewed every few seconds. Another process may take it over only when it has
expired, or at once when its holder is a process of this host that no longer exists.
Commands that only read or make a single change (`run-due`, `members add`, ...) take none.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlite_utils import Database

from mailcircle.clock import iso, parse_iso
from mailcircle.db import transaction
from mailcircle.errors import MailcircleError

log = logging.getLogger(__name__)

NAME = "worker"
TTL = timedelta(seconds=60)  # how long a lease lives without a heartbeat
HEARTBEAT_SECONDS = 10.0


class LeaseHeld(MailcircleError):
    """Another process works this database."""


def _now() -> datetime:
    # Real time, not the circle's clock: the lease is between processes, maybe hosts.
    return datetime.now(UTC)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class Lease:
    def __init__(self, db: Database, command: str) -> None:
        self.db = db
        self.command = command
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.holder = f"{self.host}:{self.pid}:{secrets.token_hex(4)}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        """Take the lease or raise LeaseHeld with one sentence saying who holds it."""
        now = _now()
        with transaction(self.db):
            row = self.db.execute(
                "SELECT holder, host, pid, command, since, expires_at FROM leases WHERE name = ?",
                [NAME],
            ).fetchone()
            if row is not None and row[0] != self.holder:
                holder, host, pid, command, since, expires_at = row
                stale = parse_iso(expires_at) <= now or (host == self.host and not _alive(pid))
                if not stale:
                    raise LeaseHeld(
                        f"another mailcircle works this database: `{command}` (pid {pid} on"
                        f" {host}) since {since}; stop it first, or wait until {expires_at}"
                        " if it died on another host"
                    )
                log.warning(
                    "taking over the lease of %s (pid %s on %s): it is gone", command, pid, host
                )
            self.db.execute(
                "INSERT OR REPLACE INTO leases (name, holder, host, pid, command, since,"
                " heartbeat_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    NAME,
                    self.holder,
                    self.host,
                    self.pid,
                    self.command,
                    iso(now),
                    iso(now),
                    iso(now + TTL),
                ],
            )

    def renew(self) -> bool:
        """Push the expiry on; False when the lease is no longer ours."""
        now = _now()
        with transaction(self.db):
            cursor = self.db.execute(
                "UPDATE leases SET heartbeat_at = ?, expires_at = ? WHERE name = ? AND holder = ?",
                [iso(now), iso(now + TTL), NAME, self.holder],
            )
        return cursor.rowcount == 1

    def keep(self, on_lost: Callable[[], None]) -> None:
        """Renew in a thread every few seconds; call ``on_lost`` if another process took it."""

        def beat() -> None:
            while not self._stop.wait(HEARTBEAT_SECONDS):
                try:
                    if not self.renew():
                        log.error("the lease on the database was taken by another process")
                        on_lost()
                        return
                except Exception:  # a busy or full database: the lease has time to spare
                    log.warning("could not renew the lease; trying again", exc_info=True)

        self._thread = threading.Thread(target=beat, name="lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            with transaction(self.db):
                self.db.execute(
                    "DELETE FROM leases WHERE name = ? AND holder = ?", [NAME, self.holder]
                )
        except Exception:  # it expires by itself
            log.warning("could not release the lease", exc_info=True)
