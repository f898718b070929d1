"""Circles: a name and an address that takes drafts."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from mailcircle import addresses
from mailcircle.circle.settings import CircleSettings
from mailcircle.circle.settings import from_json as settings_from_json
from mailcircle.clock import Clock, iso
from mailcircle.db import transaction
from mailcircle.errors import AlreadyExists, MailcircleError, NotFound

_LOCAL_PART = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class Circle:
    id: int
    address: str
    name: str
    settings: dict[str, Any]
    created_at: str = ""

    @property
    def config(self) -> CircleSettings:
        """The circle's settings, defaults filled in."""
        return settings_from_json(self.settings)

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    @property
    def list_id(self) -> str:
        """RFC 2919 List-Id: poets@example.org -> poets.example.org."""
        return self.address.replace("@", ".")

    def action_address(self, action: str, token: str = "") -> str:
        return addresses.with_action(self.address, action, token, self.config.address_separator)

    def parse(self, address: str) -> addresses.Address | None:
        """An address of this circle split into action and token, by its separator."""
        return addresses.parse(address, self.config.address_separator)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Circle:
        return cls(
            id=row["id"],
            address=row["address"],
            name=row["name"],
            settings=json.loads(row["settings"] or "{}"),
            created_at=row["created_at"],
        )


def validate_address(address: str) -> str:
    address = addresses.normalize(address)
    local, at, domain = address.rpartition("@")
    if "+" in local:
        raise MailcircleError(
            "a circle address cannot contain '+': "
            "it separates the circle from commands (poets+help@...)"
        )
    domain_ok = "." in domain.strip(".") or domain == "localhost"
    if not at or not _LOCAL_PART.match(local) or not domain_ok:
        raise MailcircleError(
            f"{address!r} is not a usable circle address; give one like poets@example.org"
        )
    return address


def create(db: Database, clock: Clock, address: str, name: str) -> Circle:
    address = validate_address(address)
    name = name.strip()
    if not name:
        raise MailcircleError("a circle needs a name, for example --name Poets")
    with transaction(db):
        if db.execute("SELECT 1 FROM circles WHERE address = ?", [address]).fetchone():
            raise AlreadyExists(f"there is already a circle at {address}")
        row_id = (
            db.table("circles")
            .insert(
                {"address": address, "name": name, "settings": "{}", "created_at": iso(clock.now())}
            )
            .last_pk
        )
    return get(db, address, row_id=row_id)


def get(db: Database, address: str, *, row_id: int | None = None) -> Circle:
    """The circle at ``address`` (any +suffix allowed); NotFound names what was asked."""
    if row_id is not None:
        rows = list(db.query("SELECT * FROM circles WHERE id = ?", [row_id]))
        if rows:
            return Circle.from_row(rows[0])
    elif (found := find(db, address)) is not None:
        return found
    raise NotFound(f"no circle at {address} (see `mailcircle circle list`)")


def find(db: Database, address: str) -> Circle | None:
    """The circle an address belongs to, or None: the check made at RCPT time.

    poets@ and poets+anything@ are Poets'; poets-anything@ is too when Poets' separator
    setting is "-".
    """
    for base, separator in addresses.candidates(address):
        rows = list(db.query("SELECT * FROM circles WHERE address = ?", [base]))
        if rows:
            circle = Circle.from_row(rows[0])
            if separator in ("", "+") or circle.config.address_separator == separator:
                return circle
    return None


def all_circles(db: Database) -> list[Circle]:
    return [Circle.from_row(row) for row in db.query("SELECT * FROM circles ORDER BY address")]


def set_setting(db: Database, circle: Circle, key: str, text: str) -> Circle:
    """Change one of the circle's settings after checking it (alone and with the others)."""
    from mailcircle.circle.settings import check_together, parse_value

    value = parse_value(key, text)
    if key == "address_separator" and value == "-" and "-" in circle.address.partition("@")[0]:
        raise MailcircleError(
            f"{circle.address} has a '-' in it, so '-' cannot also separate its commands"
        )
    stored = dict(circle.settings, **{key: value})
    check_together(settings_from_json(stored))
    with transaction(db):
        db.table("circles").update(circle.id, {"settings": json.dumps(stored, sort_keys=True)})
    return get(db, circle.address, row_id=circle.id)
