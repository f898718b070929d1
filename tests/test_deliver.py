"""Delivery of queued mail: a real SMTP relay on loopback, retries with backoff, Maildir."""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import CapturingRelay, free_port

from mailcircle.circle import mailing
from mailcircle.clock import FakeClock
from mailcircle.db import transaction
from mailcircle.errors import MailcircleError
from mailcircle.outbound import outbox
from mailcircle.outbound.deliver import MaildirDrop, Sender, SMTPRelay, deliver_due


def queue_mails(db, clock, count: int = 1, prefix: str = "out") -> list[int]:
    ids = []
    with transaction(db):
        for n in range(count):
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = "poets@example.org", f"m{n}@example.net", "Hi"
            msg["Message-ID"] = f"<{prefix}-{n}@example.org>"
            msg.set_content("Hello.\n")
            ids.append(
                outbox.queue(
                    db,
                    msg,
                    now=clock.now(),
                    circle_id=None,
                    purpose="test",
                    mail_from="poets+bounce@example.org",
                )
            )
    return ids


def test_mail_goes_through_one_kept_connection(db, clock, relay: CapturingRelay) -> None:
    ids = queue_mails(db, clock, 3)
    transport = SMTPRelay("127.0.0.1", relay.port)
    assert deliver_due(db, clock, transport) == 3
    transport.close()
    mails = relay.wait_for(3)
    assert [m.rcpt_tos for m in mails] == [
        ["m0@example.net"],
        ["m1@example.net"],
        ["m2@example.net"],
    ]
    assert {m.mail_from for m in mails} == {"poets+bounce@example.org"}
    assert len(relay.peers) == 1
    assert [outbox.get(db, i).status for i in ids] == ["sent"] * 3
    assert deliver_due(db, clock, transport) == 0  # nothing is sent twice


def test_a_temporary_refusal_is_retried_with_backoff(db, clock, relay: CapturingRelay) -> None:
    [mail_id] = queue_mails(db, clock)
    transport = SMTPRelay("127.0.0.1", relay.port)
    relay.refuse_with = "451 4.3.0 Greylisted, try again later"
    deliver_due(db, clock, transport)
    first = db["outbox"].get(mail_id)
    assert (first["status"], first["attempts"]) == ("queued", 1)
    assert first["last_error"] == "the relay answered 451 4.3.0 Greylisted, try again later"
    assert first["next_attempt_at"] == (clock.now() + timedelta(minutes=1)).isoformat()
    assert deliver_due(db, clock, transport) == 0  # not due yet

    clock.advance(minutes=1)
    deliver_due(db, clock, transport)
    assert (
        db["outbox"].get(mail_id)["next_attempt_at"]
        == (clock.now() + timedelta(minutes=2)).isoformat()
    )

    relay.refuse_with = None
    clock.advance(minutes=2)
    deliver_due(db, clock, transport)
    transport.close()
    assert db["outbox"].get(mail_id)["status"] == "sent"
    assert len(relay.wait_for(1)) == 1


def test_a_permanent_refusal_is_recorded_and_not_retried(db, clock, relay) -> None:
    [mail_id] = queue_mails(db, clock)
    relay.refuse_with = "550 5.1.1 No such user"
    transport = SMTPRelay("127.0.0.1", relay.port)
    deliver_due(db, clock, transport)
    transport.close()
    row = db["outbox"].get(mail_id)
    assert (row["status"], row["last_error"]) == (
        "failed",
        "the relay answered 550 5.1.1 No such user",
    )
    clock.advance(days=1)
    assert deliver_due(db, clock, transport) == 0


def test_an_unreachable_relay_is_retried_and_finally_given_up(db, clock) -> None:
    [mail_id] = queue_mails(db, clock)
    transport = SMTPRelay("127.0.0.1", free_port(), timeout=2)
    for _ in range(outbox.MAX_ATTEMPTS):
        assert deliver_due(db, clock, transport) == 1
        clock.advance(hours=6)
    row = db["outbox"].get(mail_id)
    assert row["status"] == "failed"
    assert row["attempts"] == outbox.MAX_ATTEMPTS
    assert row["last_error"].startswith("cannot reach the relay 127.0.0.1:")


def test_without_a_relay_mail_lands_in_the_maildir(db, clock, tmp_path: Path) -> None:
    queue_mails(db, clock, 2)
    deliver_due(db, clock, MaildirDrop(tmp_path / "outgoing"))
    box = mailbox.Maildir(str(tmp_path / "outgoing"), create=False)
    got = sorted((m["Delivered-To"], m["Message-ID"]) for m in box)
    assert got == [
        ("m0@example.net", "<out-0@example.org>"),
        ("m1@example.net", "<out-1@example.org>"),
    ]


def test_starttls_and_auth_with_the_relay(db, clock, tmp_path: Path) -> None:
    """A relay that insists on STARTTLS and AUTH, with its own certificate authority."""
    import ssl
    import subprocess

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    received: list[tuple[bytes, bool]] = []
    logins: list[str] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope) -> str:
            received.append((envelope.original_content, session.ssl is not None))
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"circle" and auth_data.password == b"s3cret"
        logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)  # let aiosmtpd answer 535 itself

    port = free_port()
    relay = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    relay.start()
    try:
        queue_mails(db, clock, 1)
        trusting = SMTPRelay(
            "127.0.0.1", port, starttls=True, user="circle", password="s3cret", ca_file=cert
        )
        assert deliver_due(db, clock, trusting) == 1
        trusting.close()
        assert len(received) == 1 and received[0][1] is True  # it went over TLS
        assert logins == ["circle"]

        queue_mails(db, clock, 1, prefix="second")
        wrong = SMTPRelay(
            "127.0.0.1", port, starttls=True, user="circle", password="nope", ca_file=cert
        )
        deliver_due(db, clock, wrong)
        wrong.close()
        [row] = db.query("SELECT status, last_error FROM outbox WHERE status != 'sent'")
        assert row["status"] == "queued"  # a login to fix, not a mail to give up on
        assert row["last_error"].startswith("the relay refused the login for 'circle'")
    finally:
        relay.stop()


# --- a relay that changes under a kept connection ---------------------------------------


class ChangingRelay(CapturingRelay):
    """A capturing relay that can drop a connection at DATA, refuse on connections opened
    before a "reload", and be restarted on the same port; it notes each EHLO name."""

    def __init__(self) -> None:
        super().__init__()
        self.ehlo_names: list[str] = []
        self.drop_next_data = False
        self.old_sessions: set[int] = set()  # connections from before a reload
        self.sessions: set[int] = set()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.ehlo_names.append(hostname)
        self.sessions.add(id(session))
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if id(session) in self.old_sessions:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.drop_next_data:
            self.drop_next_data = False
            server.transport.abort()  # gone mid-session, without an answer
            return "451 never seen"
        return await super().handle_DATA(server, session, envelope)

    def reload(self) -> None:
        """Like `postfix reload`: connections open now keep talking to old tables."""
        self.old_sessions |= self.sessions

    def restart(self) -> None:
        from aiosmtpd.controller import Controller

        self.controller.stop()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()


@pytest.fixture
def changing() -> Iterator[ChangingRelay]:
    capture = ChangingRelay()
    capture.controller.start()
    yield capture
    capture.controller.stop()


def test_a_connection_dropped_mid_session_is_retried_at_once_on_a_fresh_one(
    db,
    clock,
    changing: ChangingRelay,
) -> None:
    ids = queue_mails(db, clock, 2)
    transport = SMTPRelay("127.0.0.1", changing.port)
    assert deliver_due(db, clock, transport, limit=1) == 1  # the connection stays open
    changing.drop_next_data = True
    assert deliver_due(db, clock, transport) == 1
    transport.close()
    rows = [db["outbox"].get(i) for i in ids]
    assert [(r["status"], r["attempts"]) for r in rows] == [("sent", 1), ("sent", 1)]
    assert [m.rcpt_tos for m in changing.wait_for(2)] == [["m0@example.net"], ["m1@example.net"]]
    assert len(changing.ehlo_names) == 2  # the second mail went on a second connection


def test_a_relay_restarted_between_two_mails_gets_the_second_on_a_new_connection(
    db,
    clock,
    changing: ChangingRelay,
) -> None:
    ids = queue_mails(db, clock, 2)
    transport = SMTPRelay("127.0.0.1", changing.port)
    deliver_due(db, clock, transport, limit=1)
    changing.restart()
    deliver_due(db, clock, transport)
    transport.close()
    assert [db["outbox"].get(i)["status"] for i in ids] == ["sent", "sent"]
    assert len(changing.wait_for(2)) == 2
    assert len(changing.ehlo_names) == 2  # it saw the second connect
    assert db.execute("SELECT COUNT(*) FROM outbox WHERE last_error != ''").fetchone()[0] == 0


def test_a_5xx_on_a_kept_connection_is_tried_on_a_fresh_one_before_it_counts(
    db,
    clock,
    changing: ChangingRelay,
) -> None:
    ids = queue_mails(db, clock, 2)
    transport = SMTPRelay("127.0.0.1", changing.port)
    deliver_due(db, clock, transport, limit=1)
    changing.reload()  # the kept connection now has old tables that refuse everyone
    deliver_due(db, clock, transport)
    transport.close()
    assert [db["outbox"].get(i)["status"] for i in ids] == ["sent", "sent"]
    assert len(changing.wait_for(2)) == 2


def test_a_connection_idle_past_the_limit_is_closed(db, clock, changing: ChangingRelay) -> None:
    now = [1000.0]
    transport = SMTPRelay("127.0.0.1", changing.port, idle_seconds=30, monotonic=lambda: now[0])
    queue_mails(db, clock, 1, prefix="a")
    deliver_due(db, clock, transport)
    now[0] += 29
    transport.close_idle()
    queue_mails(db, clock, 1, prefix="b")
    deliver_due(db, clock, transport)  # still within the limit: the same connection
    assert len(changing.ehlo_names) == 1
    now[0] += 31
    transport.close_idle()
    assert transport._conn is None
    queue_mails(db, clock, 1, prefix="c")
    deliver_due(db, clock, transport)
    transport.close()
    assert len(changing.ehlo_names) == 2
    assert len(changing.wait_for(3)) == 3


def test_ehlo_names_the_circles_domain_or_the_setting(db, clock, changing) -> None:
    queue_mails(db, clock, 1, prefix="a")
    transport = SMTPRelay("127.0.0.1", changing.port)
    deliver_due(db, clock, transport)
    transport.close()
    queue_mails(db, clock, 1, prefix="b")
    named = SMTPRelay("127.0.0.1", changing.port, helo_name="mail.example.org")
    deliver_due(db, clock, named)
    named.close()
    assert changing.ehlo_names == ["example.org", "mail.example.org"]


def test_a_relays_5xx_for_a_member_is_a_bounce_against_them(db, clock, poets) -> None:
    from mailcircle.children import bounce_recorder
    from mailcircle.outbound.compose import Composer

    refusing = ChangingRelay()
    refusing.controller.start()
    try:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "poets@example.org", "ann@example.net", "Hi"
        msg["Message-ID"] = "<to-ann@example.org>"
        msg.set_content("Hello.\n")
        with transaction(db):
            mail_id = mailing.queue_for_circle(db, poets, msg, now=clock.now(), purpose="test")
        transport = SMTPRelay("127.0.0.1", refusing.port)
        refusing.old_sessions = _AllSessions()  # every connection refuses, fresh ones too
        sender = Sender(db, clock, transport, on_refused=bounce_recorder(clock, Composer(clock)))
        assert sender.deliver_due() == 1
        transport.close()
    finally:
        refusing.controller.stop()
    row = db["outbox"].get(mail_id)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert row["last_error"].startswith("the relay answered 550 5.1.1 <ann@example.net>")
    [bounce] = db.query("SELECT * FROM bounces")
    ann = db.execute("SELECT id FROM members WHERE email = 'ann@example.net'").fetchone()[0]
    assert (bounce["member_id"], bounce["kind"], bounce["status"]) == (ann, "hard", "5.1.1")
    assert (bounce["outbox_id"], bounce["spool_id"]) == (mail_id, None)


class _AllSessions(set):
    def __contains__(self, item: object) -> bool:
        return True


def test_a_sent_that_cannot_be_recorded_is_recorded_before_anything_else_is_sent(
    db,
    clock,
    relay: CapturingRelay,
) -> None:
    """The relay says 250 but writing "sent" fails (a full disk, here a trigger that makes
    SQLite refuse the write): the mail is not handed over again, nothing behind it is sent
    until the fact is written, then everything goes out once."""
    ids = queue_mails(db, clock, 3)
    db.execute(
        "CREATE TRIGGER full_disk BEFORE UPDATE OF status ON outbox WHEN NEW.status = 'sent'"
        " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
    )
    transport = SMTPRelay("127.0.0.1", relay.port)
    sender = Sender(db, clock, transport)
    for _ in range(3):
        with pytest.raises(MailcircleError) as failed:
            sender.deliver_due()
        assert str(failed.value) == (
            f"the relay took outgoing mail #{ids[0]}, but recording that failed (database or "
            "disk is full); nothing more is sent until it is recorded"
        )
    assert len(relay.mails) == 1
    first = db["outbox"].get(ids[0])
    assert (first["status"], first["attempts"]) == ("queued", 1)  # counted before the handover
    assert first["next_attempt_at"] > clock.now().isoformat()  # and not due again at once

    db.execute("DROP TRIGGER full_disk")
    assert sender.deliver_due() == 2
    transport.close()
    assert [db["outbox"].get(i)["status"] for i in ids] == ["sent"] * 3
    assert sorted(m.rcpt_tos[0] for m in relay.wait_for(3)) == [
        "m0@example.net",
        "m1@example.net",
        "m2@example.net",
    ]


# --- outbox show and outbox retry ---------------------------------------------------------


def test_outbox_show_and_retry_put_a_failed_mail_back(db, db_path, clock, relay, tmp_path) -> None:
    from click.testing import CliRunner

    from mailcircle.cli import main

    config = tmp_path / "mailcircle.toml"
    config.write_text(f'database = "{db_path.name}"\n')

    def run(*args: str) -> str:
        result = CliRunner().invoke(main, ["--config", str(config), *args])
        return result.output

    ids = queue_mails(db, clock, 2)
    relay.refuse_with = "554 5.7.1 Rejected for policy reasons"
    transport = SMTPRelay("127.0.0.1", relay.port)
    deliver_due(db, clock, transport)
    transport.close()
    assert [db["outbox"].get(i)["status"] for i in ids] == ["failed", "failed"]

    shown = run("outbox", "show", str(ids[0])).splitlines()
    assert shown[:10] == [
        f"ID:            {ids[0]}",
        f"Created:       {clock.now().isoformat()}",
        "Purpose:       test",
        "Envelope from: poets+bounce@example.org",
        "Envelope to:   m0@example.net",
        "Status:        failed",
        "Attempts:      1",
        "Next attempt:  ",
        "Sent:          ",
        "Last error:    the relay answered 554 5.7.1 Rejected for policy reasons",
    ]
    assert "Headers:" in shown
    assert "Subject: Hi" in shown and "Message-ID: <out-0@example.org>" in shown

    assert run("outbox", "retry", str(ids[0])) == f"Outgoing #{ids[0]} is queued to be sent now.\n"
    again = db["outbox"].get(ids[0])
    assert (again["status"], again["attempts"]) == ("queued", 0)
    assert run("outbox", "retry", "--failed") == f"Outgoing #{ids[1]} is queued to be sent now.\n"
    assert run("outbox", "retry", "--failed") == "No failed outgoing mail.\n"
    assert run("outbox", "retry", "999") == (
        "Error: there is no outgoing mail #999 (see `mailcircle outbox list`)\n"
    )
    assert run("outbox", "show", "999") == (
        "Error: there is no outgoing mail #999 (see `mailcircle outbox list`)\n"
    )

    relay.refuse_with = None
    later = FakeClock(datetime.now(UTC) + timedelta(minutes=1))  # the CLI queued for real now
    transport = SMTPRelay("127.0.0.1", relay.port)
    assert deliver_due(db, later, transport) == 2
    transport.close()
    assert [db["outbox"].get(i)["status"] for i in ids] == ["sent", "sent"]
    assert run("outbox", "retry", str(ids[0])) == (
        f"Error: outgoing mail #{ids[0]} was already sent; nothing to retry\n"
    )


def test_mail_handed_over_when_the_process_stopped_goes_again_at_once_on_restart(
    db,
    clock,
    relay: CapturingRelay,
) -> None:
    """A process killed between handing a mail to the relay and recording the answer: the
    next sender sends it again at once (at least once, with the same Message-ID), not after
    the backoff its counted attempt set."""
    [mail_id] = queue_mails(db, clock, 1)
    with transaction(db):
        outbox.claim(db, outbox.get(db, mail_id), clock.now())  # ...and then the process died
    assert outbox.due(db, clock.now()) == []
    transport = SMTPRelay("127.0.0.1", relay.port)
    assert Sender(db, clock, transport).deliver_due() == 1
    transport.close()
    row = db["outbox"].get(mail_id)
    assert (row["status"], row["attempts"], row["handed_at"]) == ("sent", 2, None)
    assert len(relay.wait_for(1)) == 1


def test_a_421_is_tried_on_a_fresh_connection_then_retried_later(db, clock, changing) -> None:
    ids = queue_mails(db, clock, 2)
    transport = SMTPRelay("127.0.0.1", changing.port)
    deliver_due(db, clock, transport, limit=1)
    changing.refuse_with = "421 4.3.2 Service shutting down"
    deliver_due(db, clock, transport)
    row = db["outbox"].get(ids[1])
    assert (row["status"], row["attempts"]) == ("queued", 1)  # temporary: backoff as ever
    assert row["last_error"] == "the relay answered 421 4.3.2 Service shutting down"
    assert len(changing.ehlo_names) == 2  # the kept connection, then a fresh one
    changing.refuse_with = None
    clock.advance(minutes=1)
    deliver_due(db, clock, transport)
    transport.close()
    assert db["outbox"].get(ids[1])["status"] == "sent"
