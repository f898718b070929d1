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


def _paths(count: int) -> list[str]:
    """MAIL and RCPT arguments, plain and odd: quoted, commented, routed, non-ASCII, <>,
    address literals, dots out of place, parameters, stray spaces and brackets."""
    import random

    rng = random.Random(7)
    locals_ = ["a", "ann.lee", "a+b", "x-y_z", "A", "a..b", ".a", "a.", '"a b"', "ü", "a(c)"]
    domains = ["b", "example.org", "b-c.d", "b.", "-b", "[127.0.0.1]", "b..c", "ü.de", ""]
    tails = ["", " ", "  ", "\t", " SIZE=1", " SIZE=1 ", "  SIZE=10  BODY=8BITMIME ", "x"]
    tails += [" (c) SIZE=1", " \tSIZE", "\r", " ( ", " )", ' "q"', "SIZE=1", " <c@d>"]
    paths = ["", "<>", "<> SIZE=5", " <a@b>", "a@b", "<@route:a@b>", "<a@b", "<a@b>>"]
    for _ in range(count):
        if rng.random() < 0.3:
            paths.append("".join(rng.choice('ab.@<> \t()"[]:,;\\-+=S1ü') for _ in range(9)))
        else:
            open_, close = rng.choice([("<", ">"), ("<", ">"), ("", ""), (" <", ">")])
            address = f"{rng.choice(locals_)}@{rng.choice(domains)}"
            paths.append(f"{open_}{address}{close}{rng.choice(tails)}")
    return paths


@pytest.mark.parametrize("limit", [0, 3])
def test_the_edge_reads_every_path_as_aiosmtpd_does(limit: int) -> None:
    """EdgeSMTP reads plain paths with a regex of its own: for any path, plain or not, it
    gives what aiosmtpd's own reading gives (a local part over the limit included)."""
    from aiosmtpd.smtp import SMTP

    from mailcircle.inbound.smtp import _PLAIN_PATH, EdgeSMTP

    ours, theirs = EdgeSMTP.__new__(EdgeSMTP), SMTP.__new__(SMTP)
    ours.local_part_limit = theirs.local_part_limit = limit

    def reading(server: SMTP, path: str) -> object:
        try:
            return server._getaddr(path)
        except Exception as err:  # the email package trips on some odd paths: the same
            return type(err)

    plain = 0
    for path in _paths(6000):
        assert reading(ours, path) == reading(theirs, path), path
        plain += _PLAIN_PATH.match(path) is not None
    assert plain > 200  # the regex's own reading was compared, not only aiosmtpd's


def test_a_plain_path_is_read_without_aiosmtpd_and_an_odd_one_with_it(edge, monkeypatch) -> None:
    """Over a real connection: a plain MAIL FROM and RCPT TO never reach aiosmtpd's
    reader; a quoted local part does, and is spooled as written."""
    from aiosmtpd.smtp import SMTP

    server, db_path = edge
    read_by_aiosmtpd: list[str] = []
    original = SMTP._getaddr

    def counted(self: SMTP, arg: str) -> tuple[str | None, str | None]:
        read_by_aiosmtpd.append(arg)
        return original(self, arg)

    monkeypatch.setattr(SMTP, "_getaddr", counted)
    send(server.listen.port, draft(), mail_from="ann.lee@example.net", to=["poets@example.org"])
    assert read_by_aiosmtpd == []
    odd = draft(message_id="<odd@example.net>")
    send(server.listen.port, odd, mail_from='"ann lee"@example.net', to=["poets@example.org"])
    assert len(read_by_aiosmtpd) == 1
    assert read_by_aiosmtpd[0].startswith('<"ann lee"@example.net>')
    db = database.connect(db_path)
    senders = [row[0] for row in db.execute("SELECT mail_from FROM spool ORDER BY id")]
    db.close()
    assert senders == ["ann.lee@example.net", '"ann lee"@example.net']
    # A malformed path is not plain either: aiosmtpd refuses it, and nothing is stored.
    with smtplib.SMTP("127.0.0.1", server.listen.port, timeout=15) as client:
        client.ehlo()
        code, reply = client.docmd("MAIL FROM:<ann@example.>")
        assert code == 553 and b"malformed address" in reply.lower()
    assert read_by_aiosmtpd[-1] == "<ann@example.>"
    assert spool_count(db_path) == 2


def test_the_edge_runs_on_uvloop_where_it_is_installed(edge) -> None:
    server, db_path = edge
    assert type(server.controller.loop).__module__.startswith("uvloop")
    send(server.listen.port, draft(), mail_from="ann@example.net", to=["poets@example.org"])
    assert spool_count(db_path) == 1


def test_without_uvloop_the_edge_runs_on_asyncio_and_takes_mail(tmp_path, monkeypatch) -> None:
    import asyncio
    import sys

    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    db_path = tmp_path / "circle.db"
    db = database.connect(db_path)
    circles.create(db, FakeClock(), "poets@example.org", "Poets")
    db.close()
    listen = HostPort("127.0.0.1", free_port())
    server = InboundServer(db_path, FakeClock(), listen, max_message_bytes=1_000_000)
    server.start()
    try:
        assert isinstance(server.controller.loop, asyncio.BaseEventLoop)  # not uvloop.Loop
        send(listen.port, draft(), mail_from="ann@example.net", to=["poets@example.org"])
    finally:
        server.stop()
    assert spool_count(db_path) == 1
