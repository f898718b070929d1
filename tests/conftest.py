"""Fixtures: free ports, a capturing outgoing relay, a database, and `mailcircle serve`."""

from __future__ import annotations

import email
import email.policy
import os
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner

from mailcircle import db as database
from mailcircle.circle import circles, members
from mailcircle.cli import main
from mailcircle.clock import FakeClock

MAILS = Path(__file__).parent / "mails"
# Third-party corpora live outside the repository, in the sibling folder ../shared (or where
# MAILCIRCLE_SHARED points). A newcomer's clone may not have them: the tests that need them
# skip, saying why; CI sets MAILCIRCLE_REQUIRE_CORPORA=1 so that their absence fails instead.
SHARED = Path(os.environ.get("MAILCIRCLE_SHARED") or Path(__file__).resolve().parents[2] / "shared")
REQUIRE_CORPORA = os.environ.get("MAILCIRCLE_REQUIRE_CORPORA", "") not in ("", "0")


def missing_corpus(reason: str) -> None:
    """Skip the running test for want of outside material, or fail it when CI requires it."""
    if REQUIRE_CORPORA:
        pytest.fail(f"{reason} (MAILCIRCLE_REQUIRE_CORPORA is set, so this fails)", pytrace=False)
    pytest.skip(reason)


def need_corpus(folder: Path, pattern: str, what: str) -> list[Path]:
    """The files of an outside corpus, or a skip (a failure in CI) when there are none."""
    files = sorted(folder.rglob(pattern)) if folder.is_dir() else []
    if not files:
        missing_corpus(f"{what} not found: no {pattern} under {folder}")
    return files


def corpus(values: list, folder: Path, what: str) -> list:
    """Parameters for a test run once per file of an outside corpus.

    With no files, one parameter that skips with the reason (fails in CI), so an empty
    corpus never lets the test pass by running zero times.
    """
    if values:
        return values
    reason = f"{what} not found under {folder}"
    return [pytest.param(None, marks=pytest.mark.corpus_missing(reason), id="corpus-missing")]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "corpus_missing(reason): the outside corpus is absent")


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("corpus_missing")
    if marker is not None:
        missing_corpus(marker.args[0])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


@dataclass
class Captured:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)  # type: ignore[return-value]


class CapturingRelay:
    """The outgoing relay in tests: an aiosmtpd server that keeps every mail it is given."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mails: list[Captured] = []
        self.peers: set = set()  # one entry per SMTP connection that sent DATA
        self.refuse_with: str | None = None  # e.g. "451 4.3.0 try later" to simulate trouble
        self._changed = threading.Condition()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope) -> str:
        self.peers.add(session.peer)
        if self.refuse_with:
            return self.refuse_with
        with self._changed:
            self.mails.append(
                Captured(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
            )
            self._changed.notify_all()
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Captured]:
        return self.wait_until(lambda mails: len(mails) >= count, f"{count} mails", timeout)

    def wait_until(self, predicate, what: str, timeout: float = 15.0) -> list[Captured]:
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.mails), timeout):
                raise AssertionError(
                    f"expected {what} within {timeout}s; the relay has {len(self.mails)} mails"
                )
            return list(self.mails)


@pytest.fixture
def relay() -> Iterator[CapturingRelay]:
    capture = CapturingRelay()
    capture.controller.start()
    yield capture
    capture.controller.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "circle.db"


@pytest.fixture
def db(db_path: Path):
    handle = database.connect(db_path)
    yield handle
    handle.close()


@pytest.fixture
def poets(db, clock):
    """The circle Poets at poets@example.org with members Ann and Ben."""
    circle = circles.create(db, clock, "poets@example.org", "Poets")
    # Test mail carries no DKIM signature: this circle believes From: (tests/test_attacks.py
    # covers sender_check = verify).
    circle = circles.set_setting(db, circle, "sender_check", "accept")
    members.add(db, clock, circle, "ann@example.net", "Ann")
    members.add(db, clock, circle, "ben@example.net", "Ben")
    return circle


def write_settings(path: Path, *, smtp_port: int, relay_port: int | None, lmtp_port=None) -> Path:
    lines = [
        'database = "circle.db"',
        "[inbound]",
        f'smtp = "127.0.0.1:{smtp_port}"',
        f'lmtp = "127.0.0.1:{lmtp_port}"' if lmtp_port else 'lmtp = ""',
        "[outbound]",
        f'relay = "127.0.0.1:{relay_port}"' if relay_port else 'relay = ""',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


class Serve:
    """`mailcircle serve` as a real process, as an operator would start it."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc: subprocess.Popen | None = None
        self.log = config.parent / "serve.log"

    def cli(self, *args: str) -> str:
        result = CliRunner().invoke(main, ["--config", str(self.config), *args])
        assert result.exit_code == 0, result.output
        return result.output

    def start(self, port: int) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mailcircle", "--config", str(self.config), "serve"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.config.parent,
                env=env,
            )
        wait_for_port(port, proc=self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def serve(tmp_path: Path, relay: CapturingRelay, smtp_port: int) -> Iterator[Serve]:
    """A settings file for a real `serve`, with Poets (Ann, Ben) created through the CLI."""
    config = write_settings(
        tmp_path / "mailcircle.toml", smtp_port=smtp_port, relay_port=relay.port
    )
    runner = Serve(config)
    runner.cli("circle", "create", "poets@example.org", "--name", "Poets")
    runner.cli("circle", "set", "poets@example.org", "sender_check", "accept")
    runner.cli("members", "add", "poets@example.org", "ann@example.net", "--name", "Ann")
    runner.cli("members", "add", "poets@example.org", "ben@example.net", "--name", "Ben")
    yield runner
    runner.stop()


def send(port: int, raw: bytes, *, mail_from: str, to: list[str]) -> dict:
    """Send one mail with smtplib over a real socket; returns the refused recipients."""
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as client:
        return client.sendmail(mail_from, to, raw)


def draft(
    *,
    sender: str = "Ann <ann@example.net>",
    to: str = "poets@example.org",
    subject: str = "The Red Wheelbarrow",
    body: str = "so much depends\nupon\n\n   a red wheel\nbarrow\n",
    message_id: str | None = "<draft-1@example.net>",
    extra: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    if message_id:
        msg["Message-ID"] = message_id
    for name, value in (extra or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes(policy=email.policy.SMTP)


def queued_mails(db, purpose: str | None = None) -> list[EmailMessage]:
    """The mails in the outbox, oldest first (only those of ``purpose`` when given), parsed."""
    where, args = ("WHERE purpose = ?", [purpose]) if purpose else ("", [])
    return [
        email.message_from_bytes(row["raw"], policy=email.policy.default)  # type: ignore[misc]
        for row in db.query(f"SELECT raw FROM outbox {where} ORDER BY id", args)
    ]


def spool_one(db, clock, raw: bytes, *, mail_from="ann@example.net", to="poets@example.org"):
    """Spool one mail as the SMTP edge would: the spooled row, for the worker."""
    from mailcircle.inbound import spool

    [spool_id] = spool.store(
        db, clock, source="smtp", peer="", mail_from=mail_from, recipients=[(to, 1)], raw=raw
    )
    return spool.get(db, spool_id)


def process_mail(db, clock, worker, raw: bytes, to: str, mail_from: str = "x@example.net") -> str:
    """Spool one mail as the SMTP edge would and run it through the worker: its outcome."""
    return worker.process(spool_one(db, clock, raw, mail_from=mail_from, to=to))
