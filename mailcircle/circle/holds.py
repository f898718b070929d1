"""Held inbound mail and its release: the confirmations bound to one spooled mail.

A member's mail that cannot be verified waits (spool status ``held``) with a confirmation
token sent to the member's real address (purpose ``held``) and one to each moderator
(purpose ``moderate``). A reply through either token releases the mail (it goes back to
``new`` and is processed as confirmed) or discards it; so does a moderator on the command
line. Every token closes when the mail is released or discarded.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlite_utils import Database

from mailcircle.clock import Clock, iso
from mailcircle.errors import MailcircleError, NotFound

HELD = "held"  # the member confirms it was them
MODERATE = "moderate"  # a moderator releases or discards it
DISCARDED = "ignored"  # the spool status a discarded mail ends with


def create(
    db: Database, clock: Clock, circle_id: int, email: str, purpose: str, spool_id: int
) -> str:
    """A new token bound to ``email`` and the held mail; returns the token."""
    token = secrets.token_hex(12)
    db.table("confirmations").insert(
        {
            "token": token,
            "circle_id": circle_id,
            "email": email,
            "name": "",
            "purpose": purpose,
            "created_at": iso(clock.now()),
            "used_at": None,
            "spool_id": spool_id,
        }
    )
    return token


def released(db: Database, spool_id: int) -> bool:
    """Whether the held mail was released by its member or a moderator (so it may act)."""
    row = db.execute(
        "SELECT 1 FROM confirmations WHERE spool_id = ? AND purpose IN (?, ?)"
        " AND used_at IS NOT NULL LIMIT 1",
        [spool_id, HELD, MODERATE],
    ).fetchone()
    return row is not None


def _close(db: Database, clock: Clock, spool_id: int) -> None:
    db.execute(
        "UPDATE confirmations SET used_at = ? WHERE spool_id = ? AND used_at IS NULL",
        [iso(clock.now()), spool_id],
    )


def _held_row(db: Database, spool_id: int) -> dict[str, Any]:
    rows = list(
        db.query("SELECT id, circle_id, status, outcome FROM spool WHERE id = ?", [spool_id])
    )
    if not rows:
        raise NotFound(f"there is no inbound message #{spool_id} (see `mailcircle inbox list`)")
    row = rows[0]
    if row["status"] != "held":
        raise MailcircleError(
            f"inbound message #{spool_id} is not held (it is {row['status']}: {row['outcome']})"
        )
    return row


def release(db: Database, clock: Clock, spool_id: int, by: str) -> None:
    """Let a held mail act: close its tokens and put it back in front of the worker."""
    row = _held_row(db, spool_id)
    if not db.execute(
        "SELECT 1 FROM confirmations WHERE spool_id = ? LIMIT 1", [spool_id]
    ).fetchone():
        create(db, clock, row["circle_id"], by, MODERATE, spool_id)  # who released it
    _close(db, clock, spool_id)
    db.execute(
        "UPDATE spool SET status = 'new', outcome = ?, error = '' WHERE id = ?",
        [f"released by {by}; waiting to be processed", spool_id],
    )


def discard(db: Database, clock: Clock, spool_id: int, by: str) -> None:
    """Never act on a held mail (it is kept, marked ignored); close its tokens."""
    row = _held_row(db, spool_id)
    _close(db, clock, spool_id)
    db.execute(
        "UPDATE spool SET status = ?, outcome = ? WHERE id = ?",
        [DISCARDED, f"discarded by {by} ({row['outcome']})", spool_id],
    )


def find(db: Database, token: str, circle_id: int) -> dict[str, Any] | None:
    rows = list(
        db.query(
            "SELECT * FROM confirmations"
            " WHERE token = ? AND circle_id = ? AND spool_id IS NOT NULL",
            [token, circle_id],
        )
    )
    return rows[0] if rows else None


def listing(db: Database) -> list[dict[str, Any]]:
    """Held inbound mail, newest first (for `mailcircle inbox list --status held`)."""
    return list(
        db.query(
            "SELECT id, received_at, mail_from, rcpt_to, outcome FROM spool"
            " WHERE status = 'held' ORDER BY id DESC"
        )
    )
