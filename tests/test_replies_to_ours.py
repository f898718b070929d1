"""Writers reply to whatever is in their inbox. Over SMTP to a running `mailcircle serve`:
a reply to one of the circle's own mails is what it answers, never a new draft or a second
critique, however the client addressed and threaded it."""

from __future__ import annotations

import email.policy
import sqlite3
from email.message import EmailMessage

import pytest
from conftest import CapturingRelay, Serve, draft, send

CIRCLE = "poets@example.org"


def reply_to(
    ours: EmailMessage,
    sender: str,
    text: str,
    *,
    to: str | None = None,
    thread: bool = True,
    message_id: str,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to or str(ours["Reply-To"] or ours["From"])
    msg["Subject"] = f"Re: {ours['Subject']}"
    msg["Message-ID"] = message_id
    if thread:
        msg["In-Reply-To"] = ours["Message-ID"]
        msg["References"] = " ".join(
            filter(None, [str(ours["References"] or ""), str(ours["Message-ID"])])
        )
    quoted = "\n".join("> " + line for line in ours.get_content().splitlines())
    msg.set_content(f"{text}\n\nOn Thu, Nov 26, 2026, Poets wrote:\n{quoted}\n")
    return msg.as_bytes(policy=email.policy.SMTP)


def rows(serve: Serve, sql: str) -> list[tuple]:
    with sqlite3.connect(serve.config.parent / "circle.db") as conn:
        return conn.execute(sql).fetchall()


def settled(serve: Serve) -> None:
    import time

    for _ in range(300):
        waiting = rows(
            serve,
            "SELECT (SELECT COUNT(*) FROM spool WHERE status = 'new')"
            " + (SELECT COUNT(*) FROM outbox WHERE status = 'queued')",
        )[0][0]
        if not waiting:
            return
        time.sleep(0.05)
    raise AssertionError("the circle did not settle")


@pytest.fixture
def acked(serve: Serve, relay: CapturingRelay, smtp_port: int) -> EmailMessage:
    """Ann's draft and its acknowledgement."""
    serve.start(smtp_port)
    send(smtp_port, draft(), mail_from="ann@example.net", to=[CIRCLE])
    [ack] = relay.wait_for(1)
    assert str(ack.message["Reply-To"]) == "poets+note@example.org"
    return ack.message  # type: ignore[return-value]


@pytest.mark.parametrize(
    "how",
    ["reply-to", "to the circle, threaded", "to the circle, subject only"],
)
def test_thanks_to_an_acknowledgement_is_never_a_draft(
    serve: Serve, relay: CapturingRelay, smtp_port: int, acked: EmailMessage, how: str
) -> None:
    to = None if how == "reply-to" else CIRCLE
    raw = reply_to(
        acked,
        "Ann <ann@example.net>",
        "Thanks!",
        to=to,
        thread=how != "to the circle, subject only",
        message_id="<thanks@x>",
    )
    send(smtp_port, raw, mail_from="ann@example.net", to=[to or "poets+note@example.org"])
    settled(serve)
    assert rows(serve, "SELECT title FROM submissions") == [("The Red Wheelbarrow",)]
    assert len(relay.mails) == 1  # thanks are recorded quietly: no answer
    [(outcome,)] = rows(serve, "SELECT outcome FROM spool ORDER BY id DESC LIMIT 1")
    assert "thanks, recorded" in outcome


def test_a_longer_note_gets_one_kind_line_once_a_day(
    serve: Serve, relay: CapturingRelay, smtp_port: int, acked: EmailMessage
) -> None:
    for n in range(2):
        raw = reply_to(
            acked,
            "ann@example.net",
            "Could you tell me when my poem goes out? I am nervous about it.",
            message_id=f"<note-{n}@x>",
        )
        send(smtp_port, raw, mail_from="ann@example.net", to=["poets+note@example.org"])
        settled(serve)
    assert rows(serve, "SELECT COUNT(*) FROM submissions") == [(1,)]
    answers = [m.message for m in relay.mails[1:]]
    assert [str(a["Subject"]) for a in answers] == ["Your note to Poets"]
    assert "write a new mail (not a reply) to poets@example.org" in answers[0].get_content()


def test_thanks_to_a_critique_receipt_is_not_a_second_critique(
    serve: Serve, relay: CapturingRelay, smtp_port: int, acked: EmailMessage
) -> None:
    from mailcircle import db as database
    from mailcircle.circle import assignments as work
    from mailcircle.circle import circles
    from mailcircle.clock import SystemClock
    from mailcircle.db import transaction
    from mailcircle.outbound.compose import Composer

    serve.cli("members", "add", CIRCLE, "cat@example.net", "--name", "Cat")
    db, clock = database.connect(serve.config.parent / "circle.db"), SystemClock()
    with transaction(db):  # the round starts now, as the scheduler would start it
        work.start_round(db, clock, Composer(clock), circles.get(db, CIRCLE), clock.now())
    db.close()
    assignments = relay.wait_until(
        lambda mails: sum("poets+c-" in str(m.message["Reply-To"]) for m in mails) >= 2,
        "two assignments",
    )
    assignment = next(m.message for m in assignments if "poets+c-" in str(m.message["Reply-To"]))
    reviewer = email.utils.parseaddr(str(assignment["To"]))[1]
    critique = reply_to(
        assignment,
        reviewer,
        "The barrow is wonderful; the rain less so.",
        message_id="<critique@x>",
    )
    send(
        smtp_port,
        critique,
        mail_from=reviewer,
        to=[email.utils.parseaddr(str(assignment["Reply-To"]))[1]],
    )
    mails = relay.wait_until(
        lambda mails: any(str(m.message["Subject"]).startswith("Your critique of") for m in mails),
        "the receipt",
    )
    receipt = next(
        m.message for m in mails if str(m.message["Subject"]).startswith("Your critique")
    )
    assert str(receipt["Reply-To"]) == "poets+note@example.org"
    to_ann_before = sum("ann@example.net" in m.rcpt_tos for m in relay.mails)
    # The reviewer answers the receipt (the client keeps the whole thread in References,
    # the assignment's Message-ID among them), once to Reply-To and once to the circle.
    for n, to in enumerate((None, CIRCLE)):
        thanks = reply_to(receipt, reviewer, "Great, thanks!", to=to, message_id=f"<gt{n}@x>")
        send(smtp_port, thanks, mail_from=reviewer, to=[to or "poets+note@example.org"])
    settled(serve)
    assert rows(serve, "SELECT COUNT(*) FROM critiques") == [(1,)]
    assert sum("ann@example.net" in m.rcpt_tos for m in relay.mails) == to_ann_before


@pytest.mark.parametrize(
    "subject",
    [
        "Queued for the next round: The Red Wheelbarrow",
        "Queued for the next round: « Élégie pour un été » — troisième version, revue et corrigée",
        "Re: 詩の草稿について、もう一度読んでいただけますか",
        "",
    ],
)
def test_the_subject_of_our_mail_is_read_from_its_headers_as_the_email_package_reads_it(
    subject: str,
) -> None:
    """A reply is compared with the subjects of our recent mails, read from the header block
    alone (fast): folded encoded words come out as the email package decodes them."""
    from email.header import decode_header, make_header

    from mailcircle.outbound.sent import SentMail

    msg = EmailMessage()
    msg["Subject"] = subject
    msg["To"] = "ann@example.net"
    msg.set_content("Subject: not this one, it is the body\n")
    raw = msg.as_bytes(policy=email.policy.SMTP)
    expected = str(make_header(decode_header(str(email.message_from_bytes(raw)["Subject"]))))
    assert SentMail(1, "submission_ack", "<m@x>", "ann@example.net", "", raw).subject == expected
    assert expected == subject
