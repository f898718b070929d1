"""Joining and leaving by mail are confirmed: a token goes only to the address that joins
or leaves, and is honoured only from that address (held mail has its own tokens in the
same table: holds.py)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlite_utils import Database

from mailcircle.clock import iso, parse_iso


@dataclass(frozen=True)
class Confirmation:
    token: str
    email: str
    name: str
    purpose: str  # join or leave
    created_at: datetime
    used: bool


def create(db: Database, circle_id: int, email: str, name: str, purpose: str, now: datetime) -> str:
    """A new token for ``email`` to confirm ``purpose`` with; returns the token."""
    token = secrets.token_hex(12)
    db.table("confirmations").insert(
        {
            "token": token,
            "circle_id": circle_id,
            "email": email,
            "name": name,
            "purpose": purpose,
            "created_at": iso(now),
            "used_at": None,
        }
    )
    return token


def find(db: Database, token: str, circle_id: int) -> Confirmation | None:
    row = db.execute(
        "SELECT email, name, purpose, created_at, used_at FROM confirmations"
        " WHERE token = ? AND circle_id = ?",
        [token, circle_id],
    ).fetchone()
    if row is None:
        return None
    email, name, purpose, created_at, used_at = row
    return Confirmation(token, email, name, purpose, parse_iso(created_at), bool(used_at))


def use(db: Database, token: str, now: datetime) -> None:
    db.execute("UPDATE confirmations SET used_at = ? WHERE token = ?", [iso(now), token])
