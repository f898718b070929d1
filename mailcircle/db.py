"""Opening the SQLite database through sqlite-utils (its schema is in schema.py).

Every connection runs in WAL mode with a busy timeout and foreign keys on. Connections are
in autocommit mode; every change happens inside ``transaction(db)`` (BEGIN IMMEDIATE, so two
writers queue on the busy timeout instead of failing on a lock upgrade), and sqlite-utils'
own ``atomic()`` blocks nest inside it as savepoints.

The schema changes only by adding a function to ``schema.migrations``; applied ones are
recorded in ``_sqlite_migrations`` and never edited.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from mailcircle.errors import MailcircleError
from mailcircle.schema import migrations

BUSY_TIMEOUT_MS = 10_000

__all__ = ["CircleDatabase", "connect", "migrations", "transaction", "transient"]


def connect(path: str | Path) -> Database:
    """Open (creating if needed) the database at ``path`` and bring its schema up to date."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise MailcircleError(f"the folder for the database, {path.parent}, does not exist")
    _create_private(path)
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit is on disk before we say 250 for the mail it holds.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        db = CircleDatabase(conn)
        migrations.apply(db)
    except sqlite3.DatabaseError as err:
        raise MailcircleError(f"cannot open the database {path}: {err}") from None
    return db


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner alone (drafts are private). SQLite
    gives its -wal and -shm files the same permissions as the database file."""
    if path.exists():
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as err:
        raise MailcircleError(f"cannot create the database {path}: {err.strerror}") from None


# In queries, "+column" keeps SQLite from choosing an index on that column: used where, for
# want of statistics, it would pick a broad index (e.g. all open assignments) over a narrow
# one (one reviewer's). `bench/digest.py` shows the difference (quadratic without it).


class CircleDatabase(Database):
    """sqlite-utils' Database that can put off taking the write lock (``transaction(db,
    lazy=True)``): its first write, through ``execute`` or ``atomic``, begins the
    transaction; the reads before it need no lock and never keep a writer waiting."""

    lazy = False  # inside a lazy transaction that has not written yet
    before_write: Callable[[], None] = staticmethod(lambda: None)  # e.g. let the edge go first

    def _begin_if_lazy(self) -> None:
        if self.lazy and not self.conn.in_transaction:
            self.before_write()
            self.conn.execute("BEGIN IMMEDIATE")

    def execute(self, sql: str, parameters: Any = None) -> sqlite3.Cursor:
        if self.lazy and not self.conn.in_transaction and _writes(sql):
            self._begin_if_lazy()
        return super().execute(sql, parameters)

    @contextlib.contextmanager
    def atomic(self) -> Iterator[Database]:
        self._begin_if_lazy()
        with super().atomic():
            yield self


def _writes(sql: str) -> bool:
    """Whether a statement may write (anything but a plain read)."""
    words = sql.lstrip().split(None, 1)
    return not words or words[0].upper() not in ("SELECT", "EXPLAIN", "VALUES")


@contextlib.contextmanager
def transaction(db: Database, *, lazy: bool = False) -> Iterator[Database]:
    """One write transaction: BEGIN IMMEDIATE, COMMIT on success, ROLLBACK on any error.

    Inside another transaction it is a savepoint, undone alone if its block fails.
    ``lazy`` puts off BEGIN IMMEDIATE until the block's first write (on a CircleDatabase):
    its reads before that run unlocked, so the lock is held only to write. Each read then
    sees the newest committed data; a block whose writes depend on what it read must
    write conditionally (see ``critiques.record``).
    """
    lazy_db = db if isinstance(db, CircleDatabase) else None
    if db.conn.in_transaction or (lazy_db and lazy_db.lazy):
        with db.atomic():
            yield db
        return
    if lazy and lazy_db:
        lazy_db.lazy = True  # BEGIN IMMEDIATE comes with the first write, if any
    else:
        db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    else:
        if db.conn.in_transaction:
            db.conn.execute("COMMIT")
    finally:
        if lazy_db:
            lazy_db.lazy = False


_TRANSIENT = ("locked", "busy", "disk i/o error", "database or disk is full", "unable to open")


def transient(err: BaseException) -> bool:
    """Whether a database error is the moment's (a lock held too long, a full or failing disk),
    so the work should wait and be tried again, not be recorded as failed."""
    return isinstance(err, sqlite3.OperationalError) and any(
        word in str(err).lower() for word in _TRANSIENT
    )
