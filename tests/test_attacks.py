"""Attacks, sent as an attacker would: over a real SMTP (or LMTP) connection to a running
circle, with the capturing relay as the outside world. A From: header alone acts on
nothing; only an aligned DKIM signature, a trusted Authentication-Results header, or the
member's own confirmation lets a mail act as a member. The same mails properly signed do act.
"""

from __future__ import annotations

import base64
import email
import email.policy
import smtplib
import socket
import subprocess
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import pytest
from conftest import CapturingRelay, Serve, free_port

from mailcircle import config
from mailcircle import db as database
from mailcircle.circle import assignments, circles, members
from mailcircle.clock import SystemClock
from mailcircle.db import transaction
from mailcircle.inbound.senders import ANSWERS_PER_DAY
from mailcircle.inbound.verify import SenderCheck, aligned, parse_authentication_results
from mailcircle.outbound.compose import Composer
from mailcircle.service import Service

CIRCLE = "poets@example.org"


# --- a signing key of our own, published through the DNS function the circle is given ---


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """RSA keys for example.net (the members' provider) and attacker.test, made with openssl."""
    folder = tmp_path_factory.mktemp("dkim")
    made = {}
    for domain in ("example.net", "attacker.test"):
        pem = folder / f"{domain}.pem"
        subprocess.run(
            ["openssl", "genrsa", "-traditional", "-out", str(pem), "2048"],
            check=True,
            capture_output=True,
        )
        made[domain] = pem.read_bytes()
    return made


def dns_for(keys: dict[str, bytes]) -> Any:
    records = {}
    for domain, pem in keys.items():
        der = subprocess.run(
            ["openssl", "rsa", "-pubout", "-outform", "DER"],
            input=pem,
            check=True,
            capture_output=True,
        ).stdout
        records[f"test._domainkey.{domain}"] = b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
    asked: list[str] = []

    def txt(name: bytes, timeout: float = 5) -> bytes | None:
        key = name.decode().rstrip(".")
        asked.append(key)
        return records.get(key)

    txt.asked = asked  # type: ignore[attr-defined]
    return txt


def signed(raw: bytes, keys: dict[str, bytes], domain: str = "example.net") -> bytes:
    headers = [b"from", b"to", b"subject", b"message-id", b"date"]
    signature = dkim.sign(raw, b"test", domain.encode(), keys[domain], include_headers=headers)
    return signature + raw


def mail(
    sender: str,
    to: str,
    subject: str,
    body: str = "so much depends\nupon\n\n   a red wheel\nbarrow\n",
    *,
    message_id: str,
    extra: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate()
    msg["Message-ID"] = message_id
    for name, value in (extra or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes(policy=email.policy.SMTP)


# --- a running circle: the service `mailcircle serve` runs, on real sockets --------------


class Circle:
    def __init__(
        self, folder: Path, relay: CapturingRelay, dns: Any, trusted: tuple[str, ...] = ()
    ) -> None:
        self.smtp, self.lmtp = free_port(), free_port()
        self.relay = relay
        self.settings = config.from_dict(
            {
                "database": "circle.db",
                "inbound": {
                    "smtp": f"127.0.0.1:{self.smtp}",
                    "lmtp": f"127.0.0.1:{self.lmtp}",
                    "trusted_authserv_ids": list(trusted),
                },
                "outbound": {"relay": f"127.0.0.1:{relay.port}"},
            },
            folder,
        )
        self.clock = SystemClock()
        self.db = database.connect(self.settings.database)
        self.poets = circles.create(self.db, self.clock, CIRCLE, "Poets")  # sender_check verify
        for address, name in (
            ("ann@example.net", "Ann"),
            ("ben@example.net", "Ben"),
            ("cat@example.net", "Cat"),
            ("dan@example.net", ""),
        ):
            members.add(self.db, self.clock, self.poets, address, name)
        members.add(self.db, self.clock, self.poets, "mo@example.net", "Mo", role="moderator")
        self.service = Service(
            self.settings,
            clock=self.clock,
            sender_check=SenderCheck(trusted, dns_txt=dns),
            poll_seconds=0.2,
        )
        self.service.start()

    def send(self, raw: bytes, *, mail_from: str, to: str = CIRCLE) -> None:
        with smtplib.SMTP("127.0.0.1", self.smtp, timeout=15) as client:
            client.sendmail(mail_from, [to], raw)

    def settle(self, timeout: float = 20.0) -> None:
        """Wait until every inbound mail is processed and every outgoing one handed on."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            waiting = self.db.execute(
                "SELECT (SELECT COUNT(*) FROM spool WHERE status = 'new')"
                " + (SELECT COUNT(*) FROM outbox WHERE status = 'queued')"
            ).fetchone()[0]
            if not waiting:
                return
            time.sleep(0.05)
        raise AssertionError("the circle did not settle")

    def to(self, address: str) -> list[EmailMessage]:
        return [
            m.message  # type: ignore[misc]
            for m in self.relay.mails
            if address in m.rcpt_tos
        ]

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self.db.execute(sql, params).fetchall()

    def outcome(self) -> tuple[str, str]:
        return self.rows("SELECT status, outcome FROM spool ORDER BY id DESC LIMIT 1")[0]

    def member(self, address: str) -> members.Member:
        found = members.find(self.db, self.poets, address)
        assert found is not None
        return found

    def start_round(self) -> list[dict]:
        with transaction(self.db):
            assignments.start_round(
                self.db, self.clock, Composer(self.clock), self.poets, self.clock.now()
            )
        self.settle()
        return [dict(r) for r in self.db.query("SELECT * FROM assignments ORDER BY id")]

    def close(self) -> None:
        self.service.stop()
        self.db.close()


@pytest.fixture
def circle(tmp_path: Path, relay: CapturingRelay, keys: dict[str, bytes]) -> Iterator[Circle]:
    running = Circle(tmp_path, relay, dns_for(keys))
    yield running
    running.close()


def subjects(mails: list[EmailMessage]) -> list[str]:
    return [str(m["Subject"]) for m in mails]


# --- forged drafts ------------------------------------------------------------------------


def test_a_forged_draft_waits_and_acts_only_when_the_member_confirms(circle: Circle) -> None:
    forged = mail(
        "Ben <ben@example.net>",
        CIRCLE,
        "Not Ben's poem",
        message_id="<forged-1@attacker.test>",
        # Anyone can write this header; mx.attacker.test is not trusted here.
        extra={
            "Authentication-Results": "mx.attacker.test; dkim=pass header.d=example.net; "
            "dmarc=pass header.from=example.net"
        },
    )
    circle.send(forged, mail_from="eve@attacker.test")
    circle.settle()
    assert circle.rows("SELECT COUNT(*) FROM submissions") == [(0,)]
    status, outcome = circle.outcome()
    assert status == "held" and "a draft from ben@example.net could not be verified" in outcome
    [ask] = circle.to("ben@example.net")
    assert ask["Subject"] == 'Did you send this to Poets? "Not Ben\'s poem"'
    assert ask["In-Reply-To"] == "<forged-1@attacker.test>"  # threads under the mail it asks about
    confirm = str(ask["Reply-To"])
    assert confirm.startswith("poets+confirm-") and confirm in ask.get_content()
    [notice] = circle.to("mo@example.net")
    assert "Held: a draft from ben@example.net could not be verified" in str(notice["Subject"])
    assert circle.to("ann@example.net") == []

    # Ben replies from his own mailbox (no signature needed: the token went only to him).
    circle.send(
        mail(
            "ben@example.net", confirm, "Re: Did you send", "Yes, that was me.", message_id="<y1@x>"
        ),
        mail_from="ben@example.net",
        to=confirm,
    )
    circle.settle()
    assert circle.rows("SELECT title FROM submissions") == [("Not Ben's poem",)]
    assert subjects(circle.to("ben@example.net"))[-1].startswith("Queued for the next round")


def test_a_forged_draft_is_dropped_when_the_member_says_no(circle: Circle) -> None:
    circle.send(
        mail("ben@example.net", CIRCLE, "Forged", message_id="<f2@attacker.test>"),
        mail_from="eve@attacker.test",
    )
    circle.settle()
    confirm = str(circle.to("ben@example.net")[0]["Reply-To"])
    circle.send(
        mail("ben@example.net", confirm, "Re: Did you", "No, that was not me!", message_id="<n@x>"),
        mail_from="ben@example.net",
        to=confirm,
    )
    circle.settle()
    assert circle.rows("SELECT COUNT(*) FROM submissions") == [(0,)]
    assert circle.rows("SELECT status FROM spool WHERE id = 1") == [("ignored",)]
    notices = [str(m["Subject"]) for m in circle.to("mo@example.net")]
    assert "[Poets moderators] ben@example.net says a mail in their name was not theirs" in notices
    # The token is closed: a later "yes" changes nothing.
    circle.send(
        mail("ben@example.net", confirm, "Re: Did you", "yes", message_id="<late@x>"),
        mail_from="ben@example.net",
        to=confirm,
    )
    circle.settle()
    assert circle.rows("SELECT COUNT(*) FROM submissions") == [(0,)]


def test_a_dkim_signed_draft_acts_at_once(circle: Circle, keys: dict[str, bytes]) -> None:
    raw = signed(mail("Ben <ben@example.net>", CIRCLE, "Signed", message_id="<s1@x>"), keys)
    circle.send(raw, mail_from="ben@example.net")
    circle.settle()
    assert circle.rows("SELECT title FROM submissions") == [("Signed",)]
    [ack] = circle.to("ben@example.net")
    assert str(ack["Subject"]).startswith("Queued for the next round")
    assert circle.to("mo@example.net") == []


def test_a_signature_of_another_domain_or_a_broken_one_proves_nothing(
    circle: Circle, keys: dict[str, bytes]
) -> None:
    theirs = signed(mail("ben@example.net", CIRCLE, "A", message_id="<a@x>"), keys, "attacker.test")
    circle.send(theirs, mail_from="eve@attacker.test")
    tampered = signed(mail("ben@example.net", CIRCLE, "B", message_id="<b@x>"), keys)
    circle.send(tampered.replace(b"a red wheel", b"a red wheeL"), mail_from="eve@attacker.test")
    circle.settle()
    assert circle.rows("SELECT COUNT(*) FROM submissions") == [(0,)]
    assert [s for (s,) in circle.rows("SELECT status FROM spool ORDER BY id")] == ["held", "held"]


def test_trusted_authentication_results_prove_the_sender(
    tmp_path: Path, relay: CapturingRelay, keys: dict[str, bytes]
) -> None:
    running = Circle(tmp_path, relay, dns_for(keys), trusted=("mx.example.org",))
    try:
        for n, (server, result) in enumerate(
            [
                ("mx.example.org", "dmarc=pass (p=none) header.from=example.net"),
                (
                    "mx.example.org",
                    "spf=pass smtp.mailfrom=ben@example.net; dkim=pass header.d=mail.example.net",
                ),
                ("mx.example.org", "dmarc=fail header.from=example.net"),
                ("mx.elsewhere.test", "dmarc=pass header.from=example.net"),
            ]
        ):
            raw = mail(
                "ben@example.net",
                CIRCLE,
                f"Poem {n}",
                message_id=f"<ar{n}@x>",
                extra={"Authentication-Results": f"{server}; {result}"},
            )
            running.send(raw, mail_from="ben@example.net")
        running.settle()
        statuses = [s for (s,) in running.rows("SELECT status FROM spool ORDER BY id")]
        assert statuses == ["done", "done", "held", "held"]
    finally:
        running.close()


def test_an_encoded_display_name_does_not_change_who_sent_it(circle: Circle) -> None:
    for n, sender in enumerate(
        (
            b"=?utf-8?q?ben=40example.net?= <eve@attacker.test>",
            b"ben@example.net <eve@attacker.test>",
        )
    ):
        raw = (
            b"From: %s\r\nTo: poets@example.org\r\nSubject: Mine now\r\nMessage-ID: <dn%d@x>\r\n"
            % (
                sender,
                n,
            )
        )
        circle.send(raw + b"\r\nA poem.\r\n", mail_from="eve@attacker.test")
        circle.settle()
        assert circle.rows("SELECT COUNT(*) FROM submissions") == [(0,)]
        assert "from eve@attacker.test, who is not a member" in circle.outcome()[1]
    assert circle.to("ben@example.net") == []


# --- forged critiques, replies, commands and bounces --------------------------------------


def test_a_forged_critique_never_reaches_the_author(circle: Circle, keys: dict[str, bytes]) -> None:
    circle.send(
        signed(mail("ann@example.net", CIRCLE, "Ann's poem", message_id="<d@x>"), keys),
        mail_from="ann@example.net",
    )
    circle.settle()
    [row, *_] = circle.start_round()
    reviewer = members.get_by_id(circle.db, row["reviewer_id"]).email
    address = f"poets+c-{row['token']}@example.org"
    before = len(circle.to("ann@example.net"))
    forged = mail(
        reviewer,
        address,
        "Re: critique",
        "Awful. Give up.",
        message_id="<fc@attacker.test>",
    )
    circle.send(forged, mail_from="eve@attacker.test", to=address)
    circle.settle()
    assert len(circle.to("ann@example.net")) == before
    assert circle.rows("SELECT COUNT(*) FROM critiques") == [(0,)]
    assert circle.outcome()[0] == "held"

    real = signed(
        mail(
            reviewer,
            address,
            "Re: critique",
            "I loved the barrow.",
            message_id="<rc@x>",
        ),
        keys,
    )
    circle.send(real, mail_from="ben@example.net", to=address)
    circle.settle()
    delivered = circle.to("ann@example.net")[-1]
    assert "I loved the barrow." in delivered.get_content()
    assert "Give up" not in delivered.get_content()


def test_forged_commands_change_nothing(circle: Circle, keys: dict[str, bytes]) -> None:
    for n, action in enumerate(("pause", "digest-off", "resume")):
        address = f"poets+{action}@example.org"
        circle.send(
            mail("ann@example.net", address, action, "", message_id=f"<c{n}@x>"),
            mail_from="eve@attacker.test",
            to=address,
        )
    circle.settle()
    ann = circle.member("ann@example.net")
    assert ann.status == "active"
    assert circle.rows("SELECT digest FROM members WHERE id = ?", (ann.id,)) == [("weekly",)]
    assert [s for (s,) in circle.rows("SELECT status FROM spool")] == ["held"] * 3
    # Signed by Ann's provider, the same command acts at once.
    address = "poets+pause@example.org"
    circle.send(
        signed(mail("ann@example.net", address, "pause", "", message_id="<p@x>"), keys),
        mail_from="ann@example.net",
        to=address,
    )
    circle.settle()
    assert circle.member("ann@example.net").status == "paused"


def test_delivery_reports_without_a_token_never_count(circle: Circle) -> None:
    report = (
        "From: MAILER-DAEMON@mx.attacker.test\r\nTo: poets@example.org\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <{n}@attacker.test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; "
        'boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nFailed.\r\n--b\r\n'
        "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.attacker.test\r\n"
        "\r\nFinal-Recipient: rfc822; ann@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "\r\n--b--\r\n"
    )
    for n in range(4):
        circle.send(report.format(n=n).encode(), mail_from="")
    circle.settle()
    assert circle.rows("SELECT COUNT(*) FROM bounces") == [(0,)]
    assert circle.member("ann@example.net").status == "active"
    assert circle.relay.mails == []  # and nobody was answered


def test_answers_to_a_forged_address_are_capped(circle: Circle) -> None:
    attacker_words = "Click http://attacker.test/win " * 20
    for n in range(ANSWERS_PER_DAY + 7):
        address = "poets+help@example.org"
        circle.send(
            mail("ann@example.net", address, attacker_words, "", message_id=f"<h{n}@x>"),
            mail_from="eve@attacker.test",
            to=address,
        )
    circle.settle()
    to_ann = circle.to("ann@example.net")
    assert len(to_ann) == ANSWERS_PER_DAY
    [note] = circle.to("mo@example.net")
    assert note["Subject"] == "[Poets moderators] Answers to ann@example.net paused for a day"
    # Strangers hear how to join once a week, however many mails come.
    for n in range(3):
        circle.send(
            mail("eve@attacker.test", CIRCLE, attacker_words, message_id=f"<e{n}@x>"),
            mail_from="eve@attacker.test",
        )
    circle.settle()
    [told] = circle.to("eve@attacker.test")
    assert len(str(told["Subject"])) < 100  # the attacker's subject is echoed only in short


def test_a_null_envelope_sender_is_empty_everywhere(circle: Circle) -> None:
    raw = mail("ann@example.net", CIRCLE, "Bounce-shaped", message_id="<nul@x>")
    circle.send(raw, mail_from="")  # MAIL FROM:<>
    with socket.create_connection(("127.0.0.1", circle.lmtp), timeout=10) as sock:
        lines = sock.makefile("rb")
        lines.readline()
        for command in (b"LHLO test", b"MAIL FROM:<>", b"RCPT TO:<poets@example.org>", b"DATA"):
            sock.sendall(command + b"\r\n")
            while lines.readline()[3:4] == b"-":
                pass
        sock.sendall(raw.replace(b"<nul@x>", b"<nul2@x>") + b".\r\n")
        assert lines.readline().startswith(b"250")
    circle.settle()
    assert circle.rows("SELECT DISTINCT mail_from FROM spool") == [("",)]
    assert circle.rows("SELECT COUNT(*) FROM submissions") == [(0,)]
    assert circle.relay.mails == []


# --- loops ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject, body",
    [
        ("Away", "I am away until Monday with no access to mail."),
        ("Your message", "Thank you for your message. I will read it when I can."),
        (None, "Thanks, got it."),  # None: "Re: " + the subject of our mail, quoting it
    ],
)
def test_a_naive_auto_responder_never_makes_drafts_or_loops(
    circle: Circle, keys: dict[str, bytes], subject: str | None, body: str
) -> None:
    """Ann's mailbox answers every mail it gets, with no Auto-Submitted header at all (and
    signed by her provider, as real ones are)."""
    circle.send(
        signed(mail("Ann <ann@example.net>", CIRCLE, "Real poem", message_id="<r@x>"), keys),
        mail_from="ann@example.net",
    )
    circle.settle()
    answered = 0
    for n in range(8):
        waiting = circle.to("ann@example.net")[answered:]
        if not waiting:
            break
        for ours in waiting:
            answered += 1
            text = body
            if subject is None:
                quoted = "\n".join("> " + line for line in ours.get_content().splitlines())
                text = f"{body}\n\n{quoted}\n"
            reply = mail(
                "ann@example.net",
                str(ours["Reply-To"] or ours["From"]),
                subject or f"Re: {ours['Subject']}",
                text,
                message_id=f"<auto-{n}-{answered}@example.net>",
            )
            circle.send(
                signed(reply, keys),
                mail_from="ann@example.net",
                to=email.utils.parseaddr(str(ours["Reply-To"] or ours["From"]))[1],
            )
        circle.settle()
    assert circle.rows("SELECT title FROM submissions") == [("Real poem",)]
    assert len(circle.to("ann@example.net")) <= 3, subjects(circle.to("ann@example.net"))


# --- input that must not stop the circle --------------------------------------------------


def test_control_characters_never_reach_a_header_nor_stop_a_round(
    circle: Circle, keys: dict[str, bytes]
) -> None:
    members.add(circle.db, circle.clock, circle.poets, "eli@example.net", "Eli\r\nBcc: x@y")
    raw = (
        b"From: Ann <ann@example.net>\r\nTo: poets@example.org\r\n"
        b"Subject: =?utf-8?q?Evil=0D=0ABcc:_victim@attacker.test?=\r\n"
        b"Message-ID: <cc@x>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n'
        b"\r\nA poem with a file.\r\n--b\r\nContent-Type: text/plain\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''evil%0D%0ABcc%3A%20victim.txt\r\n"
        b"\r\nline\r\n--b--\r\n"
    )
    circle.send(signed(raw, keys), mail_from="ann@example.net")
    circle.settle()
    work = circle.start_round()
    assert len(work) == 3
    assert len(circle.relay.mails) == 1 + 3  # the acknowledgement, then three assignments
    for sent_mail in circle.relay.mails:
        head = sent_mail.raw.split(b"\r\n\r\n", 1)[0]
        assert not [line for line in head.split(b"\r\n") if line.lower().startswith(b"bcc")]
        assert all("attacker" not in r for r in sent_mail.rcpt_tos)
        assert sent_mail.message["Bcc"] is None


def test_tokens_close_after_the_work_passed_on(circle: Circle, keys: dict[str, bytes]) -> None:
    circle.send(
        signed(mail("ann@example.net", CIRCLE, "Ann's poem", message_id="<d@x>"), keys),
        mail_from="ann@example.net",
    )
    circle.settle()
    [row, *_] = circle.start_round()
    ben = members.get_by_id(circle.db, row["reviewer_id"])
    pause = "poets+pause@example.org"
    circle.send(
        signed(mail(ben.email, pause, "pause", "", message_id="<bp@x>"), keys),
        mail_from=ben.email,
        to=pause,
    )
    circle.settle()
    address = f"poets+c-{row['token']}@example.org"
    before = len(circle.to("ann@example.net"))
    critique = signed(
        mail(ben.email, address, "Re: critique", "Late words.", message_id="<late@x>"),
        keys,
    )
    circle.send(critique, mail_from=ben.email, to=address)
    circle.settle()
    assert len(circle.to("ann@example.net")) == before
    answer = circle.to(ben.email)[-1]
    assert "the work passed to another reviewer" in answer.get_content()


def test_no_address_is_shown_to_another_member(circle: Circle, keys: dict[str, bytes]) -> None:
    circle.send(
        signed(mail("dan@example.net", CIRCLE, "Dan's poem", message_id="<dd@x>"), keys),
        mail_from="dan@example.net",
    )
    circle.settle()
    circle.start_round()
    for sent_mail in circle.relay.mails:
        if "dan@example.net" not in sent_mail.rcpt_tos:
            assert b"dan@example.net" not in sent_mail.raw
    status = "poets+status@example.org"
    for reviewer in ("ann@example.net", "ben@example.net", "cat@example.net"):
        circle.send(
            signed(mail(reviewer, status, "status", "", message_id=f"<s-{reviewer}>"), keys),
            mail_from=reviewer,
            to=status,
        )
    circle.settle()
    texts = [m.message.get_content() for m in circle.relay.mails[-3:]]
    assert any("by a member of Poets" in text for text in texts)
    assert not any("dan@example.net" in text for text in texts)


def test_huge_and_deeply_nested_mail_is_handled_quickly(circle: Circle) -> None:
    nested = b"Content-Type: text/plain\r\n\r\ndeep\r\n"
    for depth in range(1000):
        nested = (
            f'Content-Type: multipart/mixed; boundary="b{depth}"\r\n\r\n--b{depth}\r\n'.encode()
            + nested
            + f"\r\n--b{depth}--\r\n".encode()
        )
    raw = b"From: eve@attacker.test\r\nTo: poets@example.org\r\nSubject: deep\r\n" + nested
    began = time.monotonic()
    circle.send(raw, mail_from="eve@attacker.test")
    # A 20 MB line cannot come over SMTP (500, line too long); an IMAP mailbox can hold it.
    from mailcircle.inbound import spool

    spool.store(
        circle.db,
        circle.clock,
        source="imap",
        peer="",
        mail_from="eve@attacker.test",
        recipients=[(CIRCLE, circle.poets.id)],
        raw=b"From: eve@attacker.test\r\nTo: poets@example.org\r\nSubject: long\r\n\r\n"
        + b"x" * 20_000_000
        + b"\r\n",
    )
    circle.service._inbox_wake.set()
    circle.settle(timeout=60)
    statuses = [s for (s,) in circle.rows("SELECT status FROM spool ORDER BY id")]
    assert "new" not in statuses
    assert time.monotonic() - began < 60  # generous: a shared 2-core machine


# --- small parts --------------------------------------------------------------------------


def test_authentication_results_are_read_as_rfc_8601_writes_them() -> None:
    server, results = parse_authentication_results(
        "mx.example.org 1; (comment (nested)) dkim=pass (2048-bit key) "
        'header.d=example.net header.s="sel"; dmarc=pass header.from=example.net'
    )
    assert server == "mx.example.org"
    assert [(r.method, r.result, r.properties.get("header.d")) for r in results] == [
        ("dkim", "pass", "example.net"),
        ("dmarc", "pass", None),
    ]
    assert aligned("mail.example.net", "example.net") and aligned("example.net", "a.example.net")
    assert not aligned("example.net.evil", "example.net") and not aligned("net", "example.net")


def test_the_database_is_readable_by_the_service_alone(serve: Serve, smtp_port: int) -> None:
    serve.start(smtp_port)
    database_file = serve.config.parent / "circle.db"
    for path in (database_file, database_file.with_name("circle.db-wal")):
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_mode & 0o077 == 0, f"{path.name} is {oct(path.stat().st_mode)}"


def test_circle_show_warns_when_the_circle_believes_from_headers(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mailcircle.cli import main

    def run(*args: str) -> str:
        result = CliRunner().invoke(main, ["--config", str(settings), *args])
        assert result.exit_code == 0, result.output
        return result.output

    settings = tmp_path / "mailcircle.toml"
    settings.write_text('database = "circle.db"\n')
    run("circle", "create", CIRCLE, "--name", "Poets")
    assert "Warning" not in run("circle", "show", CIRCLE)
    run("circle", "set", CIRCLE, "sender_check", "accept")
    assert "Warning: sender_check is accept" in run("circle", "show", CIRCLE)


def test_a_moderator_releases_or_discards_held_mail_by_mail_or_command(
    circle: Circle, tmp_path: Path
) -> None:
    for n in range(2):
        circle.send(
            mail("cat@example.net", CIRCLE, f"Held {n}", message_id=f"<held{n}@x>"),
            mail_from="cat@example.net",
        )
    circle.settle()
    [notice] = circle.to("mo@example.net")  # once a day per member, however many are held
    moderate = str(notice["Reply-To"])
    assert moderate.startswith("poets+confirm-")
    # Someone who is not the moderator cannot use the moderator's token.
    circle.send(
        mail("eve@attacker.test", moderate, "Re:", "release", message_id="<steal@x>"),
        mail_from="eve@attacker.test",
        to=moderate,
    )
    circle.send(
        mail("mo@example.net", moderate, "Re: Held", "Release, please.", message_id="<mo@x>"),
        mail_from="mo@example.net",
        to=moderate,
    )
    circle.settle()
    assert circle.rows("SELECT title FROM submissions") == [("Held 0",)]
    # The second held mail, by the command line.
    from click.testing import CliRunner

    from mailcircle.cli import main

    settings = tmp_path / "mailcircle.toml"
    settings.write_text('database = "circle.db"\n')
    second = circle.rows("SELECT id FROM spool WHERE status = 'held' ORDER BY id")[-1][0]
    result = CliRunner().invoke(main, ["--config", str(settings), "inbox", "discard", str(second)])
    assert result.output == f"Inbound #{second} is discarded; it will not act.\n"
    result = CliRunner().invoke(main, ["--config", str(settings), "inbox", "release", str(second)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: inbound message #{second} is not held (it is ignored")


def test_one_draft_that_cannot_be_composed_never_stops_the_round(
    circle: Circle, keys: dict[str, bytes], tmp_path: Path
) -> None:
    # A circle template that fails for one draft stands for any composing failure.
    folder = tmp_path / "templates"
    folder.mkdir()
    builtin = Path(__file__).parents[1] / "templates" / "assignment.txt"
    (folder / "assignment.txt").write_text(
        builtin.read_text() + '{% if "Poison" in title %}{{ no_such_field }}{% endif %}\n'
    )
    circle.poets = circles.set_setting(circle.db, circle.poets, "templates_dir", str(folder))
    for n, (author, title) in enumerate((("ann", "Poison"), ("ben", "Fine"))):
        raw = mail(f"{author}@example.net", CIRCLE, title, message_id=f"<round{n}@x>")
        circle.send(signed(raw, keys), mail_from=f"{author}@example.net")
    circle.settle()
    work = circle.start_round()
    titles = {
        circle.rows("SELECT title FROM submissions WHERE id = ?", (row["submission_id"],))[0][0]
        for row in work
    }
    assert titles == {"Fine"} and len(work) == 3
    [notice] = circle.to("mo@example.net")
    assert str(notice["Subject"]) == '[Poets moderators] Round 1: "Poison" could not go out'
    assert "mailcircle drafts withdraw 1" in notice.get_content()
    assert circle.rows("SELECT status FROM submissions ORDER BY id") == [("queued",), ("assigned",)]

    from click.testing import CliRunner

    from mailcircle.cli import main

    settings = tmp_path / "mailcircle.toml"
    settings.write_text('database = "circle.db"\n')
    result = CliRunner().invoke(main, ["--config", str(settings), "drafts", "withdraw", "1"])
    assert result.output == 'Draft #1, "Poison", is withdrawn.\n'
    result = CliRunner().invoke(main, ["--config", str(settings), "drafts", "withdraw", "1"])
    assert result.output == "Error: draft #1 was withdrawn already\n"
    listed = CliRunner().invoke(main, ["--config", str(settings), "drafts", "list", CIRCLE])
    assert "Poison" in listed.output and "withdrawn" in listed.output


def test_a_100000_character_line_through_the_edge_holds_nobody_up(
    circle: Circle, keys: dict[str, bytes]
) -> None:
    """SMTP allows 998 characters a line, but base64 carries any line: a reviewer's reply
    whose one line is 100,000 characters of quote marks and blanks is trimmed in time,
    and the next member's draft is answered as usual."""
    circle.send(
        signed(mail("ann@example.net", CIRCLE, "Ann's poem", message_id="<long0@x>"), keys),
        mail_from="ann@example.net",
    )
    circle.settle()
    [row, *_] = circle.start_round()
    reviewer = members.get_by_id(circle.db, row["reviewer_id"]).email
    address = f"poets+c-{row['token']}@example.org"
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = reviewer, address, "Re: critique"
    msg["Message-ID"] = "<long1@x>"
    msg.set_content("I liked it.\n" + "> " * 25_000 + " -" * 25_000 + "\n", cte="base64")
    began = time.monotonic()
    circle.send(
        signed(msg.as_bytes(policy=email.policy.SMTP), keys), mail_from=reviewer, to=address
    )
    circle.send(
        signed(mail("ben@example.net", CIRCLE, "Ben's poem", message_id="<long2@x>"), keys),
        mail_from="ben@example.net",
    )
    circle.settle(timeout=60)
    assert time.monotonic() - began < 30  # generous: a shared 2-core machine
    delivered = circle.to("ann@example.net")[-1]
    assert "I liked it." in delivered.get_content()
    assert [str(m["Subject"]) for m in circle.to("ben@example.net")][-1].startswith(
        "Queued for the next round"
    )
