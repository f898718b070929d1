"""IMAP mode against a real Dovecot: mail put in with APPEND flows into the same spool."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import CapturingRelay, draft
from dovecot import PASSWORD, USER, Dovecot
from imapclient import IMAPClient

from mailcircle import config
from mailcircle import db as database
from mailcircle.circle import circles, members
from mailcircle.cli import main
from mailcircle.clock import FakeClock
from mailcircle.inbound.imap import ImapPoller, circle_recipient, poll_folder_once

PASSWORD_ENV = "MAILCIRCLE_TEST_IMAP_PASSWORD"


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def mailbox(dovecot: Dovecot) -> Iterator[IMAPClient]:
    """A client of our own, as the mail provider's delivery would be."""
    client = IMAPClient("127.0.0.1", dovecot.port, ssl=False)
    client.login(USER, PASSWORD)
    yield client
    try:
        client.logout()
    except Exception:
        pass


@pytest.fixture
def settings_file(
    tmp_path: Path, dovecot: Dovecot, relay: CapturingRelay, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    path = tmp_path / "mailcircle.toml"
    path.write_text(
        f"""database = "circle.db"
[inbound]
smtp = ""
[outbound]
relay = "127.0.0.1:{relay.port}"
[imap]
host = "127.0.0.1"
port = {dovecot.port}
security = "none"
user = "{USER}"
password_env = "{PASSWORD_ENV}"
processed_folder = "Processed"
failed_folder = "Failed"
"""
    )
    db = database.connect(tmp_path / "circle.db")
    poets = circles.create(db, FakeClock(), "poets@example.org", "Poets")
    poets = circles.set_setting(db, poets, "sender_check", "accept")  # unsigned test mail
    members.add(db, FakeClock(), poets, "ann@example.net", "Ann")
    db.close()
    return path


def append(client: IMAPClient, raw: bytes, folder: str = "INBOX") -> None:
    client.append(folder, raw)


def folder_counts(client: IMAPClient, *folders: str) -> dict[str, int]:
    counts = {}
    for folder in folders:
        counts[folder] = int(client.folder_status(folder, ["MESSAGES"])[b"MESSAGES"])
    return counts


def rows(db_path: Path, sql: str) -> list[dict]:
    db = database.connect(db_path)
    try:
        return list(db.query(sql))
    finally:
        db.close()


def plus_addressed(token_address: str) -> bytes:
    """A mail the provider delivered for a plus address: only Delivered-To names it."""
    msg = EmailMessage()
    msg["Delivered-To"] = token_address
    msg["From"] = "Ann <ann@example.net>"
    msg["To"] = "Poets <poets-list@lists.example.com>"
    msg["Subject"] = "help"
    msg["Message-ID"] = "<plus-1@example.net>"
    msg.set_content("help\n")
    return msg.as_bytes(policy=SMTP)


def test_poll_once_takes_drafts_and_plus_addressed_mail(
    settings_file: Path, mailbox: IMAPClient, relay: CapturingRelay
) -> None:
    append(mailbox, draft(body="so much depends\nupon\n\n   a red wheel\nbarrow\n"))
    append(mailbox, plus_addressed("poets+help@example.org"))
    append(mailbox, draft(to="someone@else.example", message_id="<stray@example.net>"))

    result = CliRunner().invoke(main, ["--config", str(settings_file), "poll", "--once"])
    assert result.exit_code == 0, result.output
    assert "Mailbox: 3 looked at, 2 new, 0 already taken, 1 could not be taken." in result.output
    assert "not taken, UID 3: no circle's address is in Delivered-To, X-Original-To, To, Cc" in (
        result.output
    )

    db_path = settings_file.parent / "circle.db"
    assert [r["body"] for r in rows(db_path, "SELECT body FROM submissions")] == [
        "so much depends\nupon\n\n   a red wheel\nbarrow"
    ]
    spooled = rows(db_path, "SELECT source, rcpt_to, status FROM spool ORDER BY id")
    assert spooled == [
        {"source": "imap", "rcpt_to": "poets@example.org", "status": "done"},
        {"source": "imap", "rcpt_to": "poets+help@example.org", "status": "done"},
    ]
    mails = relay.wait_for(2)
    assert {m.message["Subject"] for m in mails} == {
        "Queued for the next round: The Red Wheelbarrow",
        "How Poets works by mail",
    }
    # Nothing deleted: taken mail moved to Processed, the stray one to Failed.
    assert folder_counts(mailbox, "INBOX", "Processed", "Failed") == {
        "INBOX": 0,
        "Processed": 2,
        "Failed": 1,
    }


def test_the_recipient_is_read_from_delivered_to_first() -> None:
    def is_circle(address: str) -> bool:
        return address.lower().startswith("poets")

    raw = (
        b"Delivered-To: poets+c-TOKEN@example.org\r\nX-Original-To: poets@example.org\r\n"
        b"To: Poets <poets@example.org>\r\nSubject: x\r\n\r\nhi\r\n"
    )
    assert circle_recipient(raw, is_circle) == "poets+c-token@example.org"
    raw = b"To: ann@example.net\r\nCc: Poets <POETS+r-X@example.org>\r\n\r\nhi\r\n"
    assert circle_recipient(raw, is_circle) == "poets+r-x@example.org"
    assert circle_recipient(b"To: ann@example.net\r\n\r\nhi\r\n", is_circle) == ""


def test_a_crash_after_spooling_before_moving_changes_nothing_when_seen_again(
    settings_file: Path, mailbox: IMAPClient
) -> None:
    settings = config.load(settings_file)
    db = database.connect(settings.database)
    append(mailbox, draft())

    class CrashesBeforeMarking(ImapPoller):
        def _mark(self, client, uids, folder, flag):
            raise SystemExit("killed between the commit and the move")

    crashing = CrashesBeforeMarking(
        settings.imap, settings.database, FakeClock(), max_message_bytes=1_000_000
    )
    with pytest.raises(SystemExit):
        poll_folder_once(crashing, db)
    assert folder_counts(mailbox, "INBOX") == {"INBOX": 1}  # still there, unmarked
    assert len(rows(settings.database, "SELECT id FROM spool")) == 1

    poller = ImapPoller(settings.imap, settings.database, FakeClock(), max_message_bytes=1_000_000)
    report = poll_folder_once(poller, db)
    assert (report.seen, report.spooled, report.already) == (1, 0, 1)
    assert len(rows(settings.database, "SELECT id FROM spool")) == 1
    assert folder_counts(mailbox, "INBOX", "Processed") == {"INBOX": 0, "Processed": 1}
    db.close()


def test_a_uidvalidity_change_neither_loses_nor_repeats_mail(
    settings_file: Path, mailbox: IMAPClient, relay: CapturingRelay
) -> None:
    # Mail stays in its folder (no processed folder): progress is kept by UID.
    text = settings_file.read_text().replace('processed_folder = "Processed"\n', "")
    settings_file.write_text(text.replace("[imap]\n", '[imap]\nfolder = "Circle"\n'))
    mailbox.create_folder("Circle")
    # Three different drafts: the same short words twice in a day would be taken for an
    # auto-responder's (tests/test_attacks.py).
    first = draft(message_id="<a@example.net>", subject="First")
    second = draft(message_id="<b@example.net>", subject="Second")
    append(mailbox, first, "Circle")
    append(mailbox, second, "Circle")
    run = CliRunner().invoke(main, ["--config", str(settings_file), "poll", "--once"])
    assert "Mailbox: 2 looked at, 2 new" in run.output, run.output
    old_validity = mailbox.folder_status("Circle", ["UIDVALIDITY"])[b"UIDVALIDITY"]

    # The folder is rebuilt (as after a provider's migration): new UIDVALIDITY, the same
    # two mails with new UIDs, and one genuinely new mail.
    mailbox.delete_folder("Circle")
    mailbox.create_folder("Circle")
    for raw in (first, second, draft(message_id="<c@example.net>", subject="Third")):
        append(mailbox, raw, "Circle")
    assert mailbox.folder_status("Circle", ["UIDVALIDITY"])[b"UIDVALIDITY"] != old_validity

    run = CliRunner().invoke(main, ["--config", str(settings_file), "poll", "--once"])
    assert "Mailbox: 3 looked at, 1 new, 2 already taken" in run.output, run.output
    db_path = settings_file.parent / "circle.db"
    assert len(rows(db_path, "SELECT id FROM submissions")) == 3
    relay.wait_for(3)
    time.sleep(0.2)
    assert len(relay.mails) == 3
    mailbox.select_folder("Circle")
    assert sorted(mailbox.search(["SEEN"])) == [1, 2, 3]


def start_watching(settings_file: Path) -> tuple[ImapPoller, threading.Event, threading.Thread]:
    settings = config.load(settings_file)
    poller = ImapPoller(settings.imap, settings.database, FakeClock(), max_message_bytes=1_000_000)
    stop = threading.Event()
    thread = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    thread.start()
    return poller, stop, thread


def wait_for_spool(db_path: Path, count: int, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if len(rows(db_path, "SELECT id FROM spool")) >= count:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"{count} mails were not spooled within {timeout}s")


def test_idle_wakes_the_poller_within_a_second(settings_file: Path, mailbox: IMAPClient) -> None:
    text = settings_file.read_text().replace("[imap]\n", "[imap]\npoll_seconds = 3600\n")
    settings_file.write_text(text)  # were it polling, it would wait an hour
    poller, stop, thread = start_watching(settings_file)
    db_path = settings_file.parent / "circle.db"
    latencies = []
    try:
        # Dovecot announces new mail about half a second after it lands. On a loaded machine
        # one wake-up can be slow, so the best of three mails is held to the second; were
        # the poller polling instead, every one would wait an hour.
        for n in range(1, 4):
            assert poller.idling.wait(10), "the poller never entered IDLE"
            append(mailbox, draft(message_id=f"<idle-{n}@example.net>"))
            latencies.append(wait_for_spool(db_path, n, timeout=30))
            if latencies[-1] < 1.0:
                break
        assert min(latencies) < 1.0, latencies
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_a_dovecot_restart_while_watching_is_survived(
    settings_file: Path, dovecot: Dovecot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mailcircle.inbound.imap")
    poller, stop, thread = start_watching(settings_file)
    db_path = settings_file.parent / "circle.db"
    try:
        assert poller.idling.wait(10)
        assert len(connects(caplog)) == 1
        dropped = dovecot.restart()  # its IMAP sessions end with it: the poller's too
        assert dropped >= 1, "no IMAP session was open to drop"
        client = IMAPClient("127.0.0.1", dovecot.port, ssl=False)
        client.login(USER, PASSWORD)
        append(client, draft())
        client.logout()
        wait_for_spool(db_path, 1, timeout=20)  # reconnects with backoff: 1, 2, 4 s ...
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert len(connects(caplog)) >= 2, "the poller never connected again"


def connects(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("IMAP: connected")]


def test_password_command_and_bad_login(
    settings_file: Path, mailbox: IMAPClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = settings_file.read_text().replace(
        f'password_env = "{PASSWORD_ENV}"', f'password_command = "echo {PASSWORD}"'
    )
    settings_file.write_text(text)
    ok = CliRunner().invoke(main, ["--config", str(settings_file), "poll", "--once"])
    assert ok.exit_code == 0 and "Mailbox: 0 looked at" in ok.output, ok.output

    settings_file.write_text(text.replace(f"echo {PASSWORD}", "echo wrong"))
    bad = CliRunner().invoke(main, ["--config", str(settings_file), "poll", "--once"])
    assert bad.exit_code == 1
    assert bad.output.splitlines()[-1].startswith("Error: IMAP 127.0.0.1:")
    assert "uthentication failed" in bad.output


def test_mailcircle_poll_runs_until_stopped_and_answers_by_mail(
    settings_file: Path, mailbox: IMAPClient, relay: CapturingRelay
) -> None:
    """The real entry point: `mailcircle poll` as a process, a draft APPENDed, an ack out."""
    import os
    import signal
    import subprocess
    import sys

    log = settings_file.parent / "poll.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailcircle", "--config", str(settings_file), "poll"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )
    try:
        append(mailbox, draft(subject="By IMAP"))
        [ack] = relay.wait_for(1, timeout=20)
        assert ack.message["Subject"] == "Queued for the next round: By IMAP"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert proc.returncode == 0
    output = log.read_text()
    assert "is watching INBOX on circle@127.0.0.1" in output
    assert "Stopping..." in output


def test_poll_without_imap_settings_says_what_to_set(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "none.toml"), "poll"])
    assert result.exit_code == 1
    path = tmp_path / "empty.toml"
    path.write_text("")
    result = CliRunner().invoke(main, ["--config", str(path), "poll", "--once"])
    assert result.output == (
        "Error: IMAP is not set up: give imap.host, imap.user and imap.password_env "
        "(or imap.password_command) in the settings file\n"
    )
