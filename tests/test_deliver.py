"""Delivery of queued mail: a real SMTP relay on loopback, retries with backoff, Maildir."""

from __future__ import annotations

import mailbox
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

from conftest import CapturingRelay, free_port

from mailcircle.db import transaction
from mailcircle.outbound import outbox
from mailcircle.outbound.deliver import MaildirDrop, SMTPRelay, deliver_due


def queue_mails(db, clock, count: int = 1, prefix: str = "out") -> list[int]:  # noqa: ANN001
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


def test_mail_goes_through_one_kept_connection(db, clock, relay: CapturingRelay) -> None:  # noqa: ANN001
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


def test_a_temporary_refusal_is_retried_with_backoff(db, clock, relay: CapturingRelay) -> None:  # noqa: ANN001
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


def test_a_permanent_refusal_is_recorded_and_not_retried(db, clock, relay) -> None:  # noqa: ANN001
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


def test_an_unreachable_relay_is_retried_and_finally_given_up(db, clock) -> None:  # noqa: ANN001
    [mail_id] = queue_mails(db, clock)
    transport = SMTPRelay("127.0.0.1", free_port(), timeout=2)
    for _ in range(outbox.MAX_ATTEMPTS):
        assert deliver_due(db, clock, transport) == 1
        clock.advance(hours=6)
    row = db["outbox"].get(mail_id)
    assert row["status"] == "failed"
    assert row["attempts"] == outbox.MAX_ATTEMPTS
    assert row["last_error"].startswith("cannot reach the relay 127.0.0.1:")


def test_without_a_relay_mail_lands_in_the_maildir(db, clock, tmp_path: Path) -> None:  # noqa: ANN001
    queue_mails(db, clock, 2)
    deliver_due(db, clock, MaildirDrop(tmp_path / "outgoing"))
    box = mailbox.Maildir(str(tmp_path / "outgoing"), create=False)
    got = sorted((m["Delivered-To"], m["Message-ID"]) for m in box)
    assert got == [
        ("m0@example.net", "<out-0@example.org>"),
        ("m1@example.net", "<out-1@example.org>"),
    ]


def test_starttls_and_auth_with_the_relay(db, clock, tmp_path: Path) -> None:  # noqa: ANN001
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
        async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001
            received.append((envelope.original_content, session.ssl is not None))
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):  # noqa: ANN001, ANN202
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
