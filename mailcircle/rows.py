"""Small typed helpers over sqlite-utils' tables (base layer).

``db.table("name")`` is typed ``Table | View``; ``db.table("name")`` is the Table every insert and
update here means. ``new_id`` reads the id a single insert made, typed.
"""

from __future__ import annotations

from sqlite_utils.db import Table


def new_id(table: Table) -> int:
    """The primary key of the row ``table.insert(...)`` just wrote."""
    if table.last_pk is None:
        raise RuntimeError(f"nothing was inserted into {table.name}")
    return int(table.last_pk)
