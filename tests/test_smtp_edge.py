"""The SMTP edge alone: 250 only for committed mail, group commits under concurrency."""

from __future__ import annotations

import smtplib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import draft, free_port, send

from mailcircle import db as database
from mailcircle.circle import circles
from mailcircle.clock import FakeClock
from mailcircle.config import HostPort
from mailcircle.inbound.smtp import InboundServer


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[tuple[InboundServer, Path]]:
    db_path = tmp_path / "circle.db"
    db = database.connect(db_path)
    circles.create(db, FakeClock(), "poets@example.org", "Poets")
    db.close()
    server = InboundServer(
        db_path, FakeClock(), HostPort("127.0.0.1", free_port()), max_message_bytes=1_000_000
    )
    server.start()
    yield server, db_path
    server.stop()


def spool_count(db_path: Path) -> int:
    db = database.connect(db_path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM spool").fetchone()[0])
    finally:
        db.close()


def test_a_mail_that_cannot_be_committed_gets_451_not_250(edge) -> None:
    server, db_path = edge
    db = database.connect(db_path)
    db.execute(
        "CREATE TRIGGER disk_full BEFORE INSERT ON spool BEGIN SELECT RAISE(ABORT, 'full'); END"
    )
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(server.listen.port, draft(), mail_from="ann@example.net", to=["poets@example.org"])
    assert refused.value.smtp_code == 451
    assert b"could not store your message just now; please try again later" in (
        refused.value.smtp_error
    )
    assert spool_count(db_path) == 0

    db.execute("DROP TRIGGER disk_full")  # the trouble passes; the sender's retry succeeds
    send(server.listen.port, draft(), mail_from="ann@example.net", to=["poets@example.org"])
    assert spool_count(db_path) == 1
    db.close()


def test_concurrent_senders_each_get_250_for_a_committed_mail(edge) -> None:
    server, db_path = edge
    accepted: list[str] = []

    def writer(n: int) -> None:
        with smtplib.SMTP("127.0.0.1", server.listen.port, timeout=30) as client:
            for i in range(25):
                mid = f"<c{n}-{i}@example.net>"
                client.sendmail("ann@example.net", ["poets@example.org"], draft(message_id=mid))
                accepted.append(mid)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    db = database.connect(db_path)
    stored = sorted(row[0] for row in db.execute("SELECT message_id FROM spool"))
    db.close()
    assert stored == sorted(accepted) and len(stored) == 200


def test_a_circle_created_after_start_is_accepted_at_once(edge) -> None:
    server, db_path = edge
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(server.listen.port, draft(), mail_from="a@example.net", to=["prose@example.org"])
    db = database.connect(db_path)
    circles.create(db, FakeClock(), "prose@example.org", "Prose")
    db.close()
    send(server.listen.port, draft(), mail_from="a@example.net", to=["prose@example.org"])
    assert spool_count(db_path) == 1


def test_the_circle_directory_remembers_circles_not_addresses(db, db_path, clock) -> None:
    """RCPT to poets+c-TOKEN@ (a new token each time) is answered from memory once Poets is
    known; a circle created later, and a "-" circle's own rules, are still found exactly."""
    from mailcircle.inbound.smtp import CircleDirectory

    poets = circles.create(db, clock, "poets@example.org", "Poets")
    dashes = circles.create(db, clock, "prose@example.org", "Prose")
    dashes = circles.set_setting(db, dashes, "address_separator", "-")
    directory = CircleDirectory(db_path)
    asked: list[str] = []
    directory._db.conn.set_trace_callback(asked.append)
    assert directory.circle_id("poets+c-first@example.org") == poets.id
    queries = len(asked)
    assert queries > 0
    for n in range(20):
        assert directory.circle_id(f"Poets+c-{n}@Example.org") == poets.id
    assert len(asked) == queries  # remembered: no query for each new token
    assert directory.circle_id("poets-help@example.org") is None  # Poets' separator is "+"
    assert directory.circle_id("prose-help@example.org") == dashes.id
    assert directory.circle_id("prose+help@example.org") == dashes.id  # "+" always works
    assert directory.circle_id("nobody@example.org") is None
    later = circles.create(db, clock, "verse@example.org", "Verse")
    assert directory.circle_id("verse+help@example.org") == later.id  # found afresh
    directory.close()
