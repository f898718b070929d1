"""`mailcircle status`: the figures an operator (or a monitoring check) looks at.

Per circle: members by status, drafts queued, the last and the next round, inbound mail
held or failed, outgoing mail waiting (and how long the oldest has waited) or failed. The
report lists what needs a person: mail held or failed, outgoing mail stuck past a limit,
outgoing mail that failed for good.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlite_utils import Database

from mailcircle.circle import circles
from mailcircle.circle.rounds import latest_start, next_round_start
from mailcircle.clock import iso, parse_iso


@dataclass
class CircleStatus:
    address: str
    name: str
    members: dict[str, int]
    drafts_queued: int
    last_round: dict[str, Any] | None  # number and starts_at
    next_round: str  # when the next round starts (UTC), or "due now"
    inbound: dict[str, int]  # new, held, failed
    outgoing_queued: int
    outgoing_failed: int
    oldest_queued_at: str | None
    oldest_queued_age_seconds: int | None


@dataclass
class Status:
    now: str
    circles: list[CircleStatus] = field(default_factory=list)
    inbound_without_circle: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # each needs a person

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _counts(db: Database, sql: str, params: list[Any]) -> dict[str, int]:
    return {str(k): int(v) for k, v in db.execute(sql, params).fetchall()}


def age_text(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def report(db: Database, now: datetime, *, stuck_after: timedelta) -> Status:
    """The status of every circle at ``now``; mail queued longer than ``stuck_after`` is stuck."""
    status = Status(now=iso(now))
    for circle in circles.all_circles(db):
        members = _counts(
            db,
            "SELECT status, COUNT(*) FROM members WHERE circle_id = ? GROUP BY status",
            [circle.id],
        )
        last = db.execute(
            "SELECT number, starts_at FROM rounds WHERE circle_id = ? ORDER BY number DESC LIMIT 1",
            [circle.id],
        ).fetchone()
        inbound = _counts(
            db,
            "SELECT status, COUNT(*) FROM spool WHERE circle_id = ?"
            " AND status IN ('new', 'held', 'failed') GROUP BY status",
            [circle.id],
        )
        outgoing = _counts(
            db,
            "SELECT status, COUNT(*) FROM outbox WHERE circle_id = ?"
            " AND status IN ('queued', 'failed') GROUP BY status",
            [circle.id],
        )
        oldest = db.execute(
            "SELECT MIN(created_at) FROM outbox WHERE circle_id = ? AND status = 'queued'",
            [circle.id],
        ).fetchone()[0]
        age = max(0, int((now - parse_iso(oldest)).total_seconds())) if oldest else None
        queued = db.execute(
            "SELECT COUNT(*) FROM submissions WHERE circle_id = ? AND status = 'queued'",
            [circle.id],
        ).fetchone()[0]
        found = CircleStatus(
            address=circle.address,
            name=circle.name,
            members={k: members.get(k, 0) for k in sorted({"active", *members})},
            drafts_queued=int(queued),
            last_round={"number": last[0], "starts_at": last[1]} if last else None,
            next_round=_next_round(db, circle, now),
            inbound={k: inbound.get(k, 0) for k in ("new", "held", "failed")},
            outgoing_queued=outgoing.get("queued", 0),
            outgoing_failed=outgoing.get("failed", 0),
            oldest_queued_at=oldest,
            oldest_queued_age_seconds=age,
        )
        status.circles.append(found)
        where = circle.address
        if found.inbound["held"]:
            status.problems.append(
                f"{where}: {found.inbound['held']} inbound mails held for a moderator"
                " (mailcircle inbox list --status held)"
            )
        if found.inbound["failed"]:
            status.problems.append(
                f"{where}: {found.inbound['failed']} inbound mails failed"
                " (mailcircle inbox list --status failed)"
            )
        if age is not None and age > stuck_after.total_seconds():
            status.problems.append(
                f"{where}: outgoing mail has waited {age_text(age)} to be sent"
                " (mailcircle outbox list --status queued)"
            )
        if found.outgoing_failed:
            status.problems.append(
                f"{where}: {found.outgoing_failed} outgoing mails failed for good"
                " (mailcircle outbox list --status failed)"
            )
    status.inbound_without_circle = _counts(
        db,
        "SELECT status, COUNT(*) FROM spool WHERE circle_id IS NULL"
        " AND status IN ('new', 'held', 'failed') GROUP BY status",
        [],
    )
    for kind in ("held", "failed"):
        if n := status.inbound_without_circle.get(kind, 0):
            status.problems.append(
                f"{n} inbound mails for no circle {kind} (mailcircle inbox list --status {kind})"
            )
    return status


def _next_round(db: Database, circle: circles.Circle, now: datetime) -> str:
    slot = latest_start(now, circle.config)
    created = parse_iso(circle.created_at) if circle.created_at else None
    started = db.execute(
        "SELECT 1 FROM rounds WHERE circle_id = ? AND starts_at >= ?", [circle.id, iso(slot)]
    ).fetchone()
    if not started and (created is None or slot >= created):
        return "due now"
    return iso(next_round_start(now, circle.config))
