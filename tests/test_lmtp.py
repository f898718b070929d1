"""LMTP (RFC 2033), as Postfix's lmtp transport speaks it: one reply per recipient after DATA."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import draft, free_port

from mailcircle import db as database
from mailcircle.circle import circles
from mailcircle.clock import FakeClock
from mailcircle.config import HostPort
from mailcircle.inbound.smtp import InboundServer


class LMTPClient:
    """A few lines of raw LMTP: smtplib.LMTP reads only one reply after DATA."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        self.reply()  # greeting

    def reply(self) -> str:
        lines = []
        while True:
            line = self.file.readline().decode().rstrip("\r\n")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return "\n".join(lines)

    def command(self, text: str) -> str:
        self.sock.sendall(text.encode() + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def lmtp(tmp_path: Path) -> Iterator[tuple[InboundServer, Path]]:
    db_path = tmp_path / "circle.db"
    db = database.connect(db_path)
    circles.create(db, FakeClock(), "poets@example.org", "Poets")
    circles.create(db, FakeClock(), "novelists@example.org", "Novelists")
    db.close()
    server = InboundServer(
        db_path,
        FakeClock(),
        HostPort("127.0.0.1", free_port()),
        lmtp=True,
        max_message_bytes=100_000,
    )
    server.start()
    yield server, db_path
    server.stop()


def test_each_recipient_gets_its_own_reply_and_its_own_spool_row(lmtp) -> None:
    server, db_path = lmtp
    client = LMTPClient(server.listen.port)
    assert client.command("LHLO postfix.example.org").startswith("250")
    assert client.command("MAIL FROM:<ann@example.net>").startswith("250")
    assert client.command("RCPT TO:<poets@example.org>").startswith("250 2.1.5")
    assert client.command("RCPT TO:<nobody@example.org>").startswith(
        "550 5.1.1 <nobody@example.org>"
    )
    assert client.command("RCPT TO:<novelists+help@example.org>").startswith("250 2.1.5")
    assert client.command("DATA").startswith("354")
    client.sock.sendall(draft().replace(b"\r\n.", b"\r\n..") + b".\r\n")
    first, second = client.reply(), client.reply()
    assert first.startswith("250 2.0.0") and second.startswith("250 2.0.0")
    client.command("QUIT")
    client.close()

    db = database.connect(db_path)
    rows = list(db.query("SELECT rcpt_to, circle_id, source, status FROM spool ORDER BY id"))
    assert rows == [
        {"rcpt_to": "poets@example.org", "circle_id": 1, "source": "lmtp", "status": "new"},
        {
            "rcpt_to": "novelists+help@example.org",
            "circle_id": 2,
            "source": "lmtp",
            "status": "new",
        },
    ]


def test_helo_is_not_lmtp(lmtp) -> None:
    server, _ = lmtp
    client = LMTPClient(server.listen.port)
    assert client.command("HELO example.org").startswith("500")
    client.close()
