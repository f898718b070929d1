"""The database: WAL, busy timeout, foreign keys, and recorded migrations."""

from __future__ import annotations

import sqlite3

import pytest

from mailcircle import db as database


def test_connections_are_wal_with_a_busy_timeout_and_foreign_keys(db) -> None:
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == database.BUSY_TIMEOUT_MS
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO members (circle_id, email, joined_at) VALUES (99, 'a@b.c', 'now')")


def test_migrations_are_recorded_and_applied_once(db_path) -> None:
    first = database.connect(db_path)
    second = database.connect(db_path)
    applied = [m.name for m in database.migrations.applied(second)]
    assert applied == [m.name for m in database.migrations._migrations]
    assert database.migrations.pending(second) == []
    first.close()
    second.close()


def test_a_failed_transaction_leaves_nothing_behind(db) -> None:
    with pytest.raises(RuntimeError):
        with database.transaction(db):
            db["circles"].insert({"address": "a@b.org", "name": "A", "created_at": "now"})
            raise RuntimeError("boom")
    assert db.execute("SELECT COUNT(*) FROM circles").fetchone()[0] == 0


def test_a_nested_transaction_is_a_savepoint(db) -> None:
    with database.transaction(db):
        db["circles"].insert({"address": "a@b.org", "name": "A", "created_at": "now"})
        with pytest.raises(RuntimeError):
            with database.transaction(db):
                db["circles"].insert({"address": "c@d.org", "name": "C", "created_at": "now"})
                raise RuntimeError("boom")
    assert [r["address"] for r in db.query("SELECT address FROM circles")] == ["a@b.org"]
