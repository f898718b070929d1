"""The walking skeleton through real sockets: `mailcircle serve` as a process, smtplib as the
writer's mail client, an aiosmtpd server as the outgoing relay that captures what is sent."""

from __future__ import annotations

import smtplib
import sqlite3
import time

import pytest
from conftest import CapturingRelay, Serve, draft, send

from mailcircle import db as database
from mailcircle.clock import SystemClock
from mailcircle.config import HostPort
from mailcircle.inbound.smtp import InboundServer


def submissions(serve: Serve) -> list[dict]:
    db = database.connect(serve.config.parent / "circle.db")
    try:
        return list(db.query("SELECT * FROM submissions ORDER BY id"))
    finally:
        db.close()


def spool_rows(serve: Serve) -> list[dict]:
    db = database.connect(serve.config.parent / "circle.db")
    try:
        return list(db.query("SELECT id, status, outcome FROM spool ORDER BY id"))
    finally:
        db.close()


def settled_spool(serve: Serve, count: int, timeout: float = 15.0) -> list[dict]:
    """The spool once ``count`` rows exist and the worker has dealt with every one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = spool_rows(serve)
        if len(rows) >= count and all(row["status"] != "new" for row in rows):
            return rows
        time.sleep(0.05)
    raise AssertionError(f"the worker did not settle {count} mails: {spool_rows(serve)}")


def test_a_members_draft_is_stored_and_acknowledged_in_its_thread(
    serve: Serve, relay: CapturingRelay, smtp_port: int
) -> None:
    serve.start(smtp_port)
    raw = draft(
        body="Ask: Does the last line land?\n\nso much depends\nupon\n\n   a red wheel\nbarrow\n",
        extra={"References": "<earlier@example.net>"},
    )
    assert send(smtp_port, raw, mail_from="ann@example.net", to=["poets@example.org"]) == {}

    [ack] = relay.wait_for(1)
    [stored] = submissions(serve)
    assert stored["title"] == "The Red Wheelbarrow"
    assert stored["body"] == "so much depends\nupon\n\n   a red wheel\nbarrow"
    assert stored["asks"] == "Does the last line land?"
    assert stored["word_count"] == 8
    assert stored["message_id"] == "<draft-1@example.net>"

    message = ack.message
    assert ack.rcpt_tos == ["ann@example.net"]
    db = database.connect(serve.config.parent / "circle.db")
    [token] = db.execute(
        "SELECT bounce_token FROM members WHERE email = 'ann@example.net'"
    ).fetchone()
    db.close()
    assert ack.mail_from == f"poets+bounce-{token}@example.org"  # VERP: a bounce names Ann
    assert message["From"] == "Poets <poets@example.org>"
    assert message["To"] == "ann@example.net"
    assert message["Subject"] == "Queued for the next round: The Red Wheelbarrow"
    assert message["In-Reply-To"] == "<draft-1@example.net>"
    assert message["References"] == "<earlier@example.net> <draft-1@example.net>"
    assert message["Message-ID"].endswith("@example.org>")
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["List-Id"] == '"Poets" <poets.example.org>'
    body = message.get_content()
    assert "Hello Ann," in body
    assert "number 1 in the queue" in body
    assert "Does the last line land?" in body
    assert "The next round starts Monday" in body


def test_a_non_member_is_told_and_nothing_is_queued(
    serve: Serve, relay: CapturingRelay, smtp_port: int
) -> None:
    serve.start(smtp_port)
    raw = draft(sender="Zed <zed@elsewhere.net>", message_id="<zed-1@elsewhere.net>")
    send(smtp_port, raw, mail_from="zed@elsewhere.net", to=["poets@example.org"])

    [refusal] = relay.wait_for(1)
    assert refusal.rcpt_tos == ["zed@elsewhere.net"]
    assert refusal.message["Subject"] == "Not delivered to Poets: The Red Wheelbarrow"
    assert refusal.message["In-Reply-To"] == "<zed-1@elsewhere.net>"
    assert "zed@elsewhere.net is not a member" in refusal.message.get_content()
    assert submissions(serve) == []
    [row] = spool_rows(serve)
    assert row["status"] == "refused"
    assert "not a member" in row["outcome"]


def test_an_unknown_address_is_refused_during_the_dialogue(
    serve: Serve, relay: CapturingRelay, smtp_port: int
) -> None:
    serve.start(smtp_port)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(
            smtp_port,
            draft(to="novelists@example.org"),
            mail_from="ann@example.net",
            to=["novelists@example.org"],
        )
    code, text = refused.value.recipients["novelists@example.org"]
    assert code == 550
    assert b"there is no writing circle at this address" in text
    # A plus-address of a real circle is the circle's, and is accepted.
    assert (
        send(smtp_port, draft(), mail_from="ann@example.net", to=["poets+help@example.org"]) == {}
    )
    [row] = settled_spool(serve, 1)
    assert (row["status"], row["outcome"]) == ("done", "sent the help text")
    [help_mail] = relay.wait_for(1)
    assert help_mail.message["Subject"] == "How Poets works by mail"


def test_the_same_message_twice_makes_one_submission(
    serve: Serve, relay: CapturingRelay, smtp_port: int
) -> None:
    serve.start(smtp_port)
    raw = draft()
    send(smtp_port, raw, mail_from="ann@example.net", to=["poets@example.org"])
    send(smtp_port, raw, mail_from="ann@example.net", to=["poets@example.org"])
    relay.wait_for(1)
    rows = settled_spool(serve, 2)
    assert [row["status"] for row in rows] == ["done", "duplicate"]
    assert len(submissions(serve)) == 1
    assert len(relay.mails) == 1


def test_mail_spooled_before_a_crash_is_processed_after_restart(
    serve: Serve, relay: CapturingRelay, smtp_port: int, tmp_path
) -> None:
    # Only the network edge runs: mail is accepted (250) and spooled, and no worker exists,
    # exactly as if the process died between the 250 and processing.
    edge = InboundServer(
        tmp_path / "circle.db",
        SystemClock(),
        HostPort("127.0.0.1", smtp_port),
        max_message_bytes=1_000_000,
    )
    edge.start()
    try:
        for n in range(3):
            raw = draft(subject=f"Poem {n}", message_id=f"<poem-{n}@example.net>")
            assert send(smtp_port, raw, mail_from="ann@example.net", to=["poets@example.org"]) == {}
    finally:
        edge.stop()
    assert [row["status"] for row in spool_rows(serve)] == ["new"] * 3
    assert relay.mails == []

    serve.start(smtp_port)
    acks = relay.wait_for(3)
    assert sorted(m.message["Subject"] for m in acks) == [
        f"Queued for the next round: Poem {n}" for n in range(3)
    ]
    assert [s["title"] for s in submissions(serve)] == ["Poem 0", "Poem 1", "Poem 2"]


def test_a_killed_server_loses_nothing_it_accepted(
    serve: Serve, relay: CapturingRelay, smtp_port: int
) -> None:
    serve.start(smtp_port)
    accepted = 0
    for n in range(20):
        raw = draft(subject=f"Poem {n}", message_id=f"<kill-{n}@example.net>")
        send(smtp_port, raw, mail_from="ann@example.net", to=["poets@example.org"])
        accepted += 1
    serve.kill()  # SIGKILL: no clean shutdown, whatever the worker was doing
    serve.start(smtp_port)
    acks = relay.wait_until(
        lambda mails: len({m.message["In-Reply-To"] for m in mails}) == accepted,
        f"an acknowledgement for each of the {accepted} drafts",
    )
    titles = sorted(s["title"] for s in submissions(serve))
    assert titles == sorted(f"Poem {n}" for n in range(accepted))
    # A kill in the instant between the relay's 250 and our commit can send an ack again;
    # it then carries the same Message-ID, so mail clients show it once.
    ids_per_draft: dict[str, set[str]] = {}
    for ack in acks:
        ids_per_draft.setdefault(ack.message["In-Reply-To"], set()).add(ack.message["Message-ID"])
    assert all(len(ids) == 1 for ids in ids_per_draft.values())


def test_oversize_mail_is_refused_with_552(tmp_path, relay, smtp_port) -> None:
    from conftest import write_settings

    config = write_settings(
        tmp_path / "mailcircle.toml", smtp_port=smtp_port, relay_port=relay.port
    )
    config.write_text(
        config.read_text().replace("[inbound]", "[inbound]\nmax_message_bytes = 2048")
    )
    runner = Serve(config)
    runner.cli("circle", "create", "poets@example.org", "--name", "Poets")
    runner.cli("circle", "set", "poets@example.org", "sender_check", "accept")
    runner.start(smtp_port)
    try:
        with pytest.raises(smtplib.SMTPException) as refused:
            send(
                smtp_port,
                draft(body="word " * 2000),
                mail_from="a@example.net",
                to=["poets@example.org"],
            )
        assert "552" in str(refused.value)
        conn = sqlite3.connect(tmp_path / "circle.db")
        assert conn.execute("SELECT COUNT(*) FROM spool").fetchone()[0] == 0
    finally:
        runner.stop()


def test_first_run_creates_a_sample_circle_that_answers_the_printed_command(
    tmp_path, smtp_port
) -> None:
    """The README's first command: serve on the embedded default, then mail the sample."""
    import subprocess
    import sys

    from conftest import write_settings

    config = write_settings(tmp_path / "mailcircle.toml", smtp_port=smtp_port, relay_port=None)
    runner = Serve(config)
    with open(runner.log, "wb") as log:
        runner.proc = subprocess.Popen(
            [sys.executable, "-m", "mailcircle", "--config", str(config), "serve", "--sample"],
            stdout=log,
            stderr=subprocess.DEVNULL,
            cwd=tmp_path,
        )
    try:
        from conftest import wait_for_port

        wait_for_port(smtp_port, proc=runner.proc)
        deadline = time.monotonic() + 10
        while "python3 -c" not in runner.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        [command] = [line for line in runner.output().splitlines() if "python3 -c" in line]
        subprocess.run(["bash", "-c", command.replace("python3", sys.executable)], check=True)
        maildir = tmp_path / "outgoing" / "new"
        while time.monotonic() < deadline and not (maildir.exists() and any(maildir.iterdir())):
            time.sleep(0.05)
        [ack] = list(maildir.iterdir())
        assert b"Subject: Queued for the next round: My first poem" in ack.read_bytes()
    finally:
        runner.stop()
    assert "Created a sample circle, Poets at poets@localhost" in runner.output()
