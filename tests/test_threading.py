"""Threading and list headers of a whole conversation, parsed back with the email package:
draft -> acknowledgement -> assignment -> critique -> the author's thanks -> the answer."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from conftest import draft

from mailcircle.circle import assignments, members
from mailcircle.db import transaction
from mailcircle.inbound import spool
from mailcircle.inbound.process import Worker
from mailcircle.outbound.compose import Composer


def deliver(db, clock, worker, raw: bytes, to: str) -> None:
    [spool_id] = spool.store(
        db, clock, source="smtp", peer="", mail_from="x@example.net", recipients=[(to, 1)], raw=raw
    )
    assert worker.process(spool.get(db, spool_id)) == "done"


def last(db, purpose: str) -> EmailMessage:
    row = db.execute(
        "SELECT raw FROM outbox WHERE purpose = ? ORDER BY id DESC", [purpose]
    ).fetchone()
    return email.message_from_bytes(row[0], policy=email.policy.default)  # type: ignore[return-value]


def answer(to_message: EmailMessage, sender: str, body: str) -> bytes:
    """A reply as a mail client writes it: to the Reply-To, threaded under the message."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to_message["Reply-To"] or to_message["From"]
    msg["Subject"] = "Re: " + to_message["Subject"]
    msg["Message-ID"] = f"<{abs(hash(body))}@example.net>"
    msg["In-Reply-To"] = to_message["Message-ID"]
    msg["References"] = (to_message["References"] or "") + " " + to_message["Message-ID"]
    msg.set_content(body)
    return msg.as_bytes()


def test_a_whole_conversation_threads_for_the_author_and_the_reviewer(db, clock, poets) -> None:
    worker = Worker(db, clock, Composer(clock))
    deliver(db, clock, worker, draft(), "poets@example.org")
    ack = last(db, "submission_ack")
    with transaction(db):
        assignments.start_round(db, clock, Composer(clock), poets, clock.now())
    assignment = last(db, "assignment")
    deliver(
        db,
        clock,
        worker,
        answer(assignment, "ben@example.net", "Lovely."),
        assignment["Reply-To"].split("<")[-1].strip(">"),
    )
    critique = last(db, "critique_delivery")
    receipt = last(db, "critique_receipt")
    deliver(
        db, clock, worker, answer(critique, "ann@example.net", "Thank you!"), critique["Reply-To"]
    )
    thanks = last(db, "relayed_reply")

    # The author's thread: her draft, the ack, the critique.
    assert ack["In-Reply-To"] == "<draft-1@example.net>"
    assert critique["In-Reply-To"] == "<draft-1@example.net>"
    assert critique["References"] == "<draft-1@example.net>"
    # The reviewer's thread: the assignment, his critique's receipt, the author's thanks.
    assert receipt["In-Reply-To"].endswith("@example.net>")
    assert assignment["Message-ID"] in receipt["References"]
    assert thanks["In-Reply-To"] == critique["Message-ID"]
    # Every Message-ID is the circle's, unique, and stable in the outbox.
    ids = [m["Message-ID"] for m in (ack, assignment, critique, receipt, thanks)]
    assert len(set(ids)) == 5 and all(i.endswith("@example.org>") for i in ids)

    for message in (ack, assignment, critique, receipt, thanks):
        assert message["From"].endswith("<poets@example.org>")  # never a member's address
        assert message["List-Id"] == '"Poets" <poets.example.org>'
        assert message["List-Post"] == "<mailto:poets@example.org>"
        assert message["List-Help"] == "<mailto:poets+help@example.org>"
        assert message["List-Unsubscribe"] == "<mailto:poets+leave@example.org?subject=unsubscribe>"
        assert message["List-Unsubscribe-Post"] is None  # one-click only with an HTTPS URL
    assert critique["From"] == "Ben via Poets <poets@example.org>"
    assert thanks["From"] == "Ann via Poets <poets@example.org>"
    assert critique["Auto-Submitted"] is None  # a person's words
    assert ack["Auto-Submitted"] == "auto-replied"
    assert assignment["Auto-Submitted"] == "auto-generated"
    bounce = members.bounce_address(db, poets, "ben@example.net")
    assert db.execute("SELECT mail_from FROM outbox WHERE purpose = 'assignment'").fetchone() == (
        bounce,
    )
