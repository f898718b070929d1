"""Commands by mail, replies to critiques, bounces, strangers and loops (worker level),
and the forged join over real SMTP."""

from __future__ import annotations

import re
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import SHARED, CapturingRelay, Serve, corpus, draft, process_mail, queued_mails, send

from mailcircle.circle import assignments, members
from mailcircle.db import transaction
from mailcircle.inbound import spool
from mailcircle.inbound.commands import command_word
from mailcircle.inbound.process import Worker
from mailcircle.outbound.compose import Composer


@pytest.fixture
def worker(db, clock, poets) -> Worker:
    return Worker(db, clock, Composer(clock))


def mail(sender: str, to: str, subject: str = "", body: str = "", **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Message-ID"] = f"<{abs(hash((sender, to, subject, body)))}@example.net>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body or "\n")
    return msg.as_bytes()


def token_of(message: EmailMessage) -> str:
    return re.search(r"\+confirm-([0-9a-f]+)@", message["Reply-To"]).group(1)  # type: ignore[union-attr]


def test_join_needs_the_confirmation_sent_to_the_joining_address(db, clock, worker, poets) -> None:
    assert (
        process_mail(
            db,
            clock,
            worker,
            mail("Zoe <zoe@example.net>", "poets+join@example.org"),
            "poets+join@example.org",
        )
        == "done"
    )
    [confirm] = queued_mails(db)
    assert confirm["To"] == "zoe@example.net"
    assert confirm["Subject"] == "Confirm that you want to join Poets"
    assert members.find(db, poets, "zoe@example.net") is None  # not before confirming
    token = token_of(confirm)

    # The token used from another address is held, not honoured.
    forged = mail("mallory@example.com", f"poets+confirm-{token}@example.org", "Re: Confirm")
    assert process_mail(db, clock, worker, forged, f"poets+confirm-{token}@example.org") == "held"
    assert members.find(db, poets, "mallory@example.com") is None
    assert members.find(db, poets, "zoe@example.net") is None

    reply = mail("Zoe <zoe@example.net>", f"poets+confirm-{token}@example.org", "Re: Confirm")
    assert process_mail(db, clock, worker, reply, f"poets+confirm-{token}@example.org") == "done"
    assert members.find(db, poets, "zoe@example.net").name == "Zoe"
    assert queued_mails(db)[-1]["Subject"] == "Welcome to Poets"


def test_leave_is_confirmed_and_passes_work_on(db, clock, worker, poets) -> None:
    process_mail(
        db,
        clock,
        worker,
        mail("ben@example.net", "poets+leave@example.org"),
        "poets+leave@example.org",
    )
    [confirm] = queued_mails(db)
    assert confirm["Subject"] == "Confirm that you want to leave Poets"
    assert members.find(db, poets, "ben@example.net").status == "active"
    token = token_of(confirm)
    process_mail(
        db,
        clock,
        worker,
        mail("ben@example.net", f"poets+confirm-{token}@example.org"),
        f"poets+confirm-{token}@example.org",
    )
    assert members.find(db, poets, "ben@example.net") is None
    assert queued_mails(db)[-1]["Subject"] == "You have left Poets"


def test_pause_resume_and_status(db, clock, worker, poets) -> None:
    process_mail(
        db,
        clock,
        worker,
        mail("ben@example.net", "poets+pause@example.org"),
        "poets+pause@example.org",
    )
    assert members.find(db, poets, "ben@example.net").status == "paused"
    assert queued_mails(db)[-1]["Subject"] == "Paused: Poets"
    # +request with the word in the subject works the same way.
    process_mail(
        db,
        clock,
        worker,
        mail("ben@example.net", "poets+request@example.org", "resume"),
        "poets+request@example.org",
    )
    assert members.find(db, poets, "ben@example.net").status == "active"
    process_mail(
        db,
        clock,
        worker,
        mail("ann@example.net", "poets@example.org", "Fog", "the fog"),
        "poets@example.org",
    )
    process_mail(
        db,
        clock,
        worker,
        mail("ann@example.net", "poets+status@example.org"),
        "poets+status@example.org",
    )
    status = queued_mails(db)[-1]
    assert status["Subject"] == "Your status in Poets"
    assert '"Fog" (2 words)' in status.get_content()
    assert "Your standing: good." in status.get_content()


def test_an_unknown_word_gets_the_help_text(db, clock, worker) -> None:
    process_mail(
        db,
        clock,
        worker,
        mail("ann@example.net", "poets+request@example.org", "subscribe"),
        "poets+request@example.org",
    )
    assert queued_mails(db)[-1]["Subject"] == "Not understood: subscribe"
    assert command_word("request", "", "Status please\nthanks") == "status"
    assert command_word("pause", "anything", "") == "pause"


def test_commands_from_strangers_explain_how_to_join_once_a_week(db, clock, worker) -> None:
    for _ in range(2):
        process_mail(
            db,
            clock,
            worker,
            mail("zed@else.net", "poets@example.org", "My poem", "x"),
            "poets@example.org",
        )
    [notice] = queued_mails(db)
    assert notice["To"] == "zed@else.net"
    assert "send an empty mail to poets+join@example.org" in notice.get_content()
    clock.advance(days=8)
    process_mail(
        db,
        clock,
        worker,
        mail("zed@else.net", "poets+status@example.org"),
        "poets+status@example.org",
    )
    assert len(queued_mails(db)) == 2


def test_our_own_mail_coming_back_is_dropped(db, clock, worker) -> None:
    raw = mail("Poets <poets@example.org>", "poets@example.org", "Queued", "hello")
    assert process_mail(db, clock, worker, raw, "poets@example.org") == "ignored"
    raw = mail(
        "ann@example.net", "poets@example.org", "Fwd", "x", List_Id='"Poets" <poets.example.org>'
    )
    assert process_mail(db, clock, worker, raw, "poets@example.org") == "ignored"
    assert queued_mails(db) == []


def test_replies_to_a_critique_go_both_ways_and_thanks_are_recorded(
    db,
    clock,
    worker,
    poets,
) -> None:
    process_mail(db, clock, worker, draft(), "poets@example.org", "ann@example.net")
    with transaction(db):
        assignments.start_round(db, clock, Composer(clock), poets, clock.now())
    [row] = db.query("SELECT * FROM assignments")
    critique = mail("ben@example.net", f"poets+c-{row['token']}@example.org", "Re", "Lovely.")
    process_mail(db, clock, worker, critique, f"poets+c-{row['token']}@example.org")
    [token] = db.execute("SELECT token FROM critiques").fetchone()
    address = f"poets+r-{token}@example.org"

    thanks = mail(
        "ann@example.net",
        address,
        "Re: A critique",
        "Thank you!\n\nOn Mon, Ben via Poets wrote:\n> Lovely.",
    )
    assert process_mail(db, clock, worker, thanks, address) == "done"
    relayed = queued_mails(db)[-1]
    assert (relayed["To"], relayed["From"]) == (
        "ben@example.net",
        "Ann via Poets <poets@example.org>",
    )
    assert "Thank you!" in relayed.get_content() and "> Lovely." not in relayed.get_content()
    assert db.execute("SELECT thanked_at IS NOT NULL FROM critiques").fetchone() == (1,)

    answer = mail("ben@example.net", address, "Re: Ann answered", "You're welcome.")
    process_mail(db, clock, worker, answer, address)
    assert queued_mails(db)[-1]["To"] == "ann@example.net"
    stranger = mail("zed@else.net", address, "Re", "me too")
    assert process_mail(db, clock, worker, stranger, address) == "held"


DSN = """From: MAILER-DAEMON@mx.example.net
To: poets+bounce-{token}@example.org
Subject: Undelivered Mail Returned to Sender
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

This is the mail system at host mx.example.net. I'm sorry to have to inform you...

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; ben@example.net
Action: failed
Status: {status}

--B--
"""


@pytest.mark.parametrize(
    ("status", "kind"), [("5.1.1", "hard"), ("5.2.2", "mailbox_full"), ("4.4.1", "soft")]
)
def test_a_bounce_to_the_verp_address_is_recorded_against_its_member(
    db,
    clock,
    worker,
    poets,
    status: str,
    kind: str,
) -> None:
    address = members.bounce_address(db, poets, "ben@example.net")
    token = address.split("bounce-")[1].split("@")[0]
    raw = DSN.format(token=token, status=status).replace("\n", "\r\n").encode()
    assert process_mail(db, clock, worker, raw, address, mail_from="") == "done"
    ben = members.find(db, poets, "ben@example.net")
    assert db.execute("SELECT member_id, kind, status FROM bounces").fetchall() == [
        (ben.id, kind, status)
    ]
    assert queued_mails(db) == []  # never an answer to a bounce


def test_a_forged_join_never_completes_over_smtp(
    serve: Serve, relay: CapturingRelay, smtp_port: int
) -> None:
    serve.start(smtp_port)
    # Mallory forges Zoe's address to sign her up: the confirmation goes to Zoe, not Mallory.
    forged = mail("Zoe <zoe@example.net>", "poets+join@example.org", "join")
    send(smtp_port, forged, mail_from="mallory@example.com", to=["poets+join@example.org"])
    [confirm] = relay.wait_for(1)
    assert confirm.rcpt_tos == ["zoe@example.net"]
    # Guessing a token gets nowhere; a stolen one used from Mallory's address is held.
    token = token_of(confirm.message)
    for guess, sender in ((token[::-1], "zoe@example.net"), (token, "mallory@example.com")):
        send(
            smtp_port,
            mail(sender, f"poets+confirm-{guess}@example.org", "Re"),
            mail_from=sender,
            to=[f"poets+confirm-{guess}@example.org"],
        )
    import time

    deadline = time.monotonic() + 15
    while "held" not in serve.cli("inbox", "list") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "held" in serve.cli("inbox", "list", "--status", "held")
    output = serve.cli("members", "list", "poets@example.org")
    assert "zoe@example.net" not in output and "mallory" not in output


def test_a_circle_can_use_dash_as_its_separator(db, clock, worker, poets) -> None:
    from mailcircle.circle import circles

    assert circles.find(db, "poets-help@example.org") is None  # not until it is set
    circle = circles.set_setting(db, poets, "address_separator", "-")
    assert circles.find(db, "poets-help@example.org").id == circle.id
    assert circles.find(db, "poets+help@example.org").id == circle.id  # + always works
    assert circle.action_address("join") == "poets-join@example.org"
    assert (
        process_mail(
            db,
            clock,
            worker,
            mail("ann@example.net", "poets-status@example.org"),
            "poets-status@example.org",
        )
        == "done"
    )
    assert queued_mails(db)[-1]["Subject"] == "Your status in Poets"
    short = circles.create(db, clock, "short-stories@example.org", "Shorts")
    with pytest.raises(Exception, match="has a '-' in it"):
        circles.set_setting(db, short, "address_separator", "-")


def test_bounces_add_up_until_delivery_pauses_and_moderators_are_told(
    db,
    clock,
    worker,
    poets,
) -> None:
    members.add(db, clock, poets, "mo@example.net", "Mo", role=members.MODERATOR)
    address = members.bounce_address(db, poets, "ben@example.net")
    token = address.split("bounce-")[1].split("@")[0]

    count = iter(range(100))

    def bounce(status: str) -> str:
        raw = f"Message-ID: <dsn-{next(count)}@mx.example.net>\n" + DSN.format(
            token=token, status=status
        )
        raw = raw.replace("\n", "\r\n").encode()
        process_mail(db, clock, worker, raw, address, mail_from="")
        return spool.get(db, db.execute("SELECT MAX(id) FROM spool").fetchone()[0]).outcome

    for _ in range(4):  # a full mailbox never counts
        assert "mailbox full" in bounce("5.2.2")
    assert members.find(db, poets, "ben@example.net").status == "active"
    bounce("5.1.1")
    bounce("4.4.1")
    clock.advance(days=8)  # older than bounce_days: those two no longer count
    bounce("5.1.1")
    assert members.find(db, poets, "ben@example.net").status == "active"
    bounce("5.1.1")
    assert bounce("5.1.1").endswith("score 3: delivery paused, moderators told")
    assert members.find(db, poets, "ben@example.net").status == "bouncing"
    [notice] = [m for m in queued_mails(db) if m["To"] == "mo@example.net"]
    assert notice["Subject"] == "[Poets moderators] Mail to ben@example.net is bouncing"
    # No more mail is queued for Ben until he resumes.
    process_mail(
        db,
        clock,
        worker,
        mail("ben@example.net", "poets+status@example.org"),
        "poets+status@example.org",
    )
    assert all(m["To"] != "ben@example.net" for m in queued_mails(db))
    process_mail(
        db,
        clock,
        worker,
        mail("ben@example.net", "poets+resume@example.org"),
        "poets+resume@example.org",
    )
    assert members.find(db, poets, "ben@example.net").status == "active"
    assert queued_mails(db)[-1]["To"] == "ben@example.net"


def test_a_bounce_without_its_token_never_counts(db, clock, worker, poets) -> None:
    """Anyone can write a delivery report naming a member: only the VERP token is proof."""
    raw = DSN.format(token="", status="5.1.1").replace("poets+bounce-@", "poets@")
    raw = raw.replace("\n", "\r\n").encode()
    assert process_mail(db, clock, worker, raw, "poets@example.org", mail_from="") == "ignored"
    assert db.execute("SELECT member_id, kind FROM bounces").fetchall() == []


@pytest.mark.parametrize(
    "path",
    corpus(
        sorted((SHARED / "corpora" / "mail_fixtures" / "multipart_report_emails").glob("*.eml")),
        SHARED / "corpora" / "mail_fixtures" / "multipart_report_emails",
        "the delivery reports of the mail_fixtures corpus",
    ),
    ids=lambda p: p.name,
)
def test_real_delivery_reports_to_the_verp_address_are_recorded(
    db,
    clock,
    worker,
    poets,
    path: Path,
) -> None:
    address = members.bounce_address(db, poets, "ben@example.net")
    assert process_mail(db, clock, worker, path.read_bytes(), address, mail_from="") == "done"
    [(kind, status)] = db.execute("SELECT kind, status FROM bounces").fetchall()
    # What the report itself says: its first Status: field, and the kind that status means.
    [said] = re.findall(r"^Status:\s*([245]\.\d+\.\d+)", path.read_text("latin-1"), re.M)[:1]
    assert status == said
    assert kind == (
        "mailbox_full" if said in ("4.2.2", "5.2.2") else "hard" if said[0] == "5" else "soft"
    )
    assert queued_mails(db) == []


def test_unsubscribe_button_from_a_verified_member_leaves_at_once(db, clock, poets) -> None:
    """List-Unsubscribe's mailto (+leave, subject "unsubscribe") completes without a
    confirmation, but only when the sender is proven (here: a trusted server's
    Authentication-Results); a forged verdict changes nothing."""
    from mailcircle.inbound.verify import SenderCheck

    checked = Worker(db, clock, Composer(clock), sender_check=SenderCheck(["mx.example.org"]))
    leave = "poets+leave@example.org"
    forged = "Authentication_Results"
    button = mail(
        "ben@example.net",
        leave,
        "unsubscribe",
        "Sent by Gmail.",
        **{forged: ("mx.attacker.example; dmarc=pass header.from=example.net")},
    )
    process_mail(db, clock, checked, button, leave)
    [confirm] = queued_mails(db)  # not proven: confirmed from the mailbox first, as always
    assert confirm["Subject"] == "Confirm that you want to leave Poets"
    assert members.find(db, poets, "ben@example.net").status == "active"

    proven = mail(
        "ben@example.net",
        leave,
        "unsubscribe",
        "x",
        **{
            forged: (
                "mx.example.org; dkim=pass header.d=example.net; dmarc=pass header.from=example.net"
            )
        },
    )
    assert process_mail(db, clock, checked, proven, leave) == "done"
    assert members.find(db, poets, "ben@example.net") is None
    assert queued_mails(db)[-1]["Subject"] == "You have left Poets"
