"""The operator's side of the circle: changing a member, importing many, removing a circle.

Importing is two steps, so a bad file changes nothing: ``check_rows`` reads every row and
says what is wrong with each (pure), then ``import_rows`` adds the good ones in one
transaction.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from mailcircle import addresses
from mailcircle.circle import members
from mailcircle.circle.circles import Circle
from mailcircle.circle.settings import parse_value
from mailcircle.clock import Clock, iso
from mailcircle.db import transaction
from mailcircle.errors import MailcircleError, NotFound
from mailcircle.text import clean

# An address a mail can be sent to: no spaces or control characters, one @, a dotted domain.
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f<>(),;:\"\[\]]+@[a-z0-9-]+(\.[a-z0-9-]+)+$")
COLUMNS = ("name", "email", "timezone")


def check_timezone(text: str) -> str:
    return str(parse_value("timezone", text))


def check_email(text: str) -> str:
    email = addresses.normalize(text)
    if not _EMAIL.match(email):
        raise MailcircleError(f"{text.strip()!r} is not an email address")
    return email


# --- changing one member --------------------------------------------------------------------


def set_member(
    db: Database,
    circle: Circle,
    email: str,
    *,
    name: str | None = None,
    timezone: str | None = None,
    role: str | None = None,
) -> members.Member:
    """Change a member's name, time zone or role; every value is checked first."""
    member = members.find(db, circle, email)
    if member is None:
        raise NotFound(f"{addresses.normalize(email)} is not a member of {circle.address}")
    values: dict[str, Any] = {}
    if name is not None:
        values["name"] = clean(name)
    if timezone is not None:
        values["timezone"] = check_timezone(timezone)
    if role is not None:
        values["role"] = role
    if not values:
        raise MailcircleError("nothing to change: give --name, --timezone, --moderator or --member")
    with transaction(db):
        db.table("members").update(member.id, values)
    return members.get_by_id(db, member.id)


# --- importing many ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    line: int
    name: str
    email: str
    timezone: str


@dataclass
class Checked:
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "line 4: ..." for every bad row


def check_rows(lines: Iterable[str], default_timezone: str = "UTC") -> Checked:
    """Read a CSV file with a header row naming name, email and timezone; check every row."""
    reader = csv.reader(lines)
    checked = Checked()
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise MailcircleError(
            "the file is empty; it needs a header row: name,email,timezone"
        ) from None
    except csv.Error as err:
        raise MailcircleError(f"line 1: {err}") from None
    missing = [c for c in ("email",) if c not in header]
    if missing:
        raise MailcircleError(
            f"line 1 must be a header row naming the columns name, email and timezone, "
            f"not {','.join(header)!r}"
        )
    where = {column: header.index(column) for column in COLUMNS if column in header}
    seen: dict[str, int] = {}
    rows = iter(reader)
    while True:
        try:
            cells = next(rows)
        except StopIteration:
            break
        except csv.Error as err:
            checked.problems.append(f"line {reader.line_num}: {err}")
            continue
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue  # blank lines are not rows

        def cell(column: str, cells: list[str] = cells) -> str:
            index = where.get(column)
            return cells[index].strip() if index is not None and index < len(cells) else ""

        try:
            email = check_email(cell("email"))
            zone = check_timezone(cell("timezone") or default_timezone)
        except MailcircleError as err:
            checked.problems.append(f"line {line}: {err}")
            continue
        if email in seen:
            checked.problems.append(f"line {line}: {email} is already on line {seen[email]}")
            continue
        seen[email] = line
        checked.rows.append(Row(line, clean(cell("name")), email, zone))
    return checked


@dataclass
class Imported:
    added: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)  # "line 3: ann@... is already a member"


def import_rows(
    db: Database,
    clock: Clock,
    circle: Circle,
    rows: list[Row],
    *,
    progress: Callable[[int], None] = lambda done: None,
) -> Imported:
    """Add every row as a member, in one transaction; members already there are left alone."""
    result = Imported()
    with transaction(db):
        for done, row in enumerate(rows, 1):
            if members.find(db, circle, row.email) is not None:
                result.existing.append(
                    f"line {row.line}: {row.email} is already a member; left as it is"
                )
            else:
                member = members.add(db, clock, circle, row.email, row.name)
                db.execute(
                    "UPDATE members SET timezone = ? WHERE id = ?", [row.timezone, member.id]
                )
                result.added.append(row.email)
            progress(done)
    return result


# --- removing a circle --------------------------------------------------------------------------


def open_work(db: Database, circle: Circle) -> list[str]:
    """What removing the circle would throw away that is still under way."""
    found = []
    for what, sql in (
        (
            "drafts queued for a round",
            "SELECT COUNT(*) FROM submissions WHERE circle_id = ? AND status = 'queued'",
        ),
        (
            "open assignments",
            "SELECT COUNT(*) FROM assignments a JOIN rounds r ON r.id = a.round_id"
            " WHERE r.circle_id = ? AND a.status = 'open'",
        ),
        (
            "outgoing mails not sent yet",
            "SELECT COUNT(*) FROM outbox WHERE circle_id = ? AND status = 'queued'",
        ),
        (
            "inbound mails not processed yet",
            "SELECT COUNT(*) FROM spool WHERE circle_id = ? AND status = 'new'",
        ),
    ):
        n = db.execute(sql, [circle.id]).fetchone()[0]
        if n:
            found.append(f"{n} {what}")
    return found


def _references(db: Database) -> dict[str, list[tuple[str, str, str]]]:
    """For each table, the (table, column, parent column) of the foreign keys pointing at it."""
    pointing: dict[str, list[tuple[str, str, str]]] = {}
    for table in db.table_names():
        for fk in db.execute(f"PRAGMA foreign_key_list([{table}])").fetchall():
            parent, column, parent_column = fk[2], fk[3], fk[4] or "id"
            if parent != table:
                pointing.setdefault(parent, []).append((table, column, parent_column))
    return pointing


def _delete(
    db: Database,
    pointing: dict[str, list[tuple[str, str, str]]],
    table: str,
    where: str,
    params: list[Any],
    counts: dict[str, int],
) -> None:
    """Delete rows of ``table`` matching ``where``, and first every row that points at them."""
    for child, column, parent_column in pointing.get(table, []):
        _delete(
            db,
            pointing,
            child,
            f"[{column}] IN (SELECT [{parent_column}] FROM [{table}] WHERE {where})",
            params,
            counts,
        )
    deleted = db.execute(f"DELETE FROM [{table}] WHERE {where}", params).rowcount
    counts[table] = counts.get(table, 0) + deleted


def remove_circle(db: Database, circle: Circle, *, force: bool = False) -> dict[str, int]:
    """Delete the circle and everything that belongs to it; refuses open work unless forced."""
    if not force and (work := open_work(db, circle)):
        raise MailcircleError(
            f"{circle.address} still has work under way ({', '.join(work)}); "
            "use --force to remove it anyway"
        )
    counts: dict[str, int] = {}
    with transaction(db):
        _delete(db, _references(db), "circles", "id = ?", [circle.id], counts)
    return {table: n for table, n in counts.items() if n}


# --- run-due --now ---------------------------------------------------------------------------


def last_outbox_id(db: Database) -> int:
    return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()[0])


def send_now(db: Database, after_id: int, now: datetime) -> int:
    """Make mail queued after ``after_id`` due at ``now`` (mail queued for a later moment by
    `run-due --now` would otherwise wait for the real clock to get there)."""
    with transaction(db):
        return db.execute(
            "UPDATE outbox SET next_attempt_at = min(next_attempt_at, ?),"
            " created_at = min(created_at, ?) WHERE id > ? AND status = 'queued'",
            [iso(now), iso(now), after_id],
        ).rowcount
