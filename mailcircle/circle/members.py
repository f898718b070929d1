"""Members of a circle: who may submit drafts and who reviews them."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlite_utils import Database

from mailcircle import addresses
from mailcircle.circle.circles import Circle
from mailcircle.clock import Clock, iso
from mailcircle.db import transaction
from mailcircle.errors import AlreadyExists, MailcircleError, NotFound
from mailcircle.text import clean

ACTIVE = "active"
PAUSED = "paused"
LEFT = "left"
MODERATOR = "moderator"


@dataclass(frozen=True)
class Member:
    id: int
    circle_id: int
    email: str
    name: str
    status: str
    role: str = "member"
    timezone: str = "UTC"

    @property
    def greeting_name(self) -> str:
        """What to call them in a mail: their name, else the part of the address before @."""
        return self.name or self.email.partition("@")[0]

    def shown_as(self, circle_name: str) -> str:
        """What other members see: their name, else "a member of Poets" (never an address)."""
        return self.name or f"a member of {circle_name}"

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Member:
        return cls(
            row["id"],
            row["circle_id"],
            row["email"],
            row["name"],
            row["status"],
            row.get("role", "member"),
            row.get("timezone", "UTC"),
        )


def _valid_email(email: str) -> str:
    email = addresses.normalize(email)
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in email):
        raise MailcircleError(f"{email!r} is not an email address")
    return email


def add(
    db: Database, clock: Clock, circle: Circle, email: str, name: str = "", *, role: str = "member"
) -> Member:
    email = _valid_email(email)
    with transaction(db):
        existing = find(db, circle, email, include_left=True)
        if existing and existing.status != LEFT:
            raise AlreadyExists(f"{email} is already a member of {circle.address}")
        values = {
            "circle_id": circle.id,
            "email": email,
            "name": clean(name)[:100],  # a name reaches headers: no CR, LF or other controls
            "status": ACTIVE,
            "role": role,
            "bounce_token": secrets.token_hex(8),
            "joined_at": iso(clock.now()),
            "left_at": None,
        }
        if existing:  # someone who left and comes back keeps their history
            db.table("members").update(existing.id, values)
        else:
            db.table("members").insert(values)
    member = find(db, circle, email)
    assert member is not None
    return member


def remove(db: Database, clock: Clock, circle: Circle, email: str) -> Member:
    """Mark a member as left. Their drafts and critiques stay; they get no more mail."""
    email = addresses.normalize(email)
    with transaction(db):
        member = find(db, circle, email)
        if member is None:
            raise NotFound(f"{email} is not a member of {circle.address}")
        db.table("members").update(member.id, {"status": LEFT, "left_at": iso(clock.now())})
    return member


def find(db: Database, circle: Circle, email: str, *, include_left: bool = False) -> Member | None:
    sql = "SELECT * FROM members WHERE circle_id = ? AND email = ?"
    if not include_left:
        sql += f" AND status != '{LEFT}'"
    rows = list(db.query(sql, [circle.id, addresses.normalize(email)]))
    return Member.from_row(rows[0]) if rows else None


def list_members(db: Database, circle: Circle) -> list[Member]:
    return [
        Member.from_row(row)
        for row in db.query(
            f"SELECT * FROM members WHERE circle_id = ? AND status != '{LEFT}' ORDER BY email",
            [circle.id],
        )
    ]


def set_status(db: Database, member_id: int, status: str) -> None:
    """Pause or resume a member. Call inside the transaction that causes it."""
    db.execute("UPDATE members SET status = ? WHERE id = ?", [status, member_id])


def get_by_id(db: Database, member_id: int) -> Member:
    rows = list(db.query("SELECT * FROM members WHERE id = ?", [member_id]))
    if not rows:
        raise NotFound(f"there is no member #{member_id}")
    return Member.from_row(rows[0])


def moderators(db: Database, circle: Circle) -> list[Member]:
    return [
        Member.from_row(row)
        for row in db.query(
            "SELECT * FROM members WHERE circle_id = ? AND role = ? AND status != ? ORDER BY email",
            [circle.id, MODERATOR, LEFT],
        )
    ]


def bounce_address(
    db: Database, circle: Circle, email: str, *, member: Member | None = None
) -> str:
    """The envelope sender for mail to ``email``: VERP, so a bounce names its member
    (``member``, when the caller has found them already, left or not)."""
    member = member or find(db, circle, email, include_left=True)
    if member is None:
        return circle.action_address(addresses.BOUNCE)
    row = db.execute("SELECT bounce_token FROM members WHERE id = ?", [member.id]).fetchone()
    token = row[0]
    if not token:
        token = secrets.token_hex(8)
        db.execute("UPDATE members SET bounce_token = ? WHERE id = ?", [token, member.id])
    return circle.action_address(addresses.BOUNCE, token)


def by_bounce_token(db: Database, token: str) -> Member | None:
    rows = list(db.query("SELECT * FROM members WHERE bounce_token = ?", [token]))
    return Member.from_row(rows[0]) if rows else None


# --- strangers: told how to join at most once a week, whatever they write to --------------

STRANGER_NOTICE_INTERVAL = timedelta(days=7)


def stranger_told_lately(db: Database, circle: Circle, email: str, now: datetime) -> bool:
    """Whether a non-member got an automatic answer from the circle within the interval."""
    row = db.execute(
        "SELECT sent_at FROM stranger_notices WHERE circle_id = ? AND email = ?",
        [circle.id, email],
    ).fetchone()
    return bool(row) and row[0] > iso(now - STRANGER_NOTICE_INTERVAL)


def remember_stranger_told(db: Database, circle: Circle, email: str, now: datetime) -> None:
    db.execute(
        "INSERT INTO stranger_notices (circle_id, email, sent_at) VALUES (?, ?, ?)"
        " ON CONFLICT (circle_id, email) DO UPDATE SET sent_at = excluded.sent_at",
        [circle.id, email, iso(now)],
    )


def count_by_circle(db: Database) -> dict[int, int]:
    """How many members (all but those who left) each circle has, by circle id."""
    return {
        circle_id: count
        for circle_id, count in db.execute(
            f"SELECT circle_id, COUNT(*) FROM members WHERE status != '{LEFT}' GROUP BY circle_id"
        ).fetchall()
    }
