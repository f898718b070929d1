"""Answers to assignments, at the worker: critiques, wrong senders, lost tokens, away notices."""

from __future__ import annotations

from datetime import timedelta
from email.message import EmailMessage

import pytest
from conftest import draft, process_mail, queued_mails

from mailcircle.circle import assignments, members
from mailcircle.db import transaction
from mailcircle.inbound.process import Worker
from mailcircle.outbound.compose import Composer


@pytest.fixture
def worker(db, clock, poets) -> Worker:
    members.add(db, clock, poets, "cid@example.net", "Cid")
    return Worker(db, clock, Composer(clock))


@pytest.fixture
def assigned(db, clock, worker, poets):
    """Ann's draft, sent out in round 1: returns her assignments' rows."""
    assert (
        process_mail(db, clock, worker, draft(), "poets@example.org", "ann@example.net") == "done"
    )
    with transaction(db):
        assignments.start_round(db, clock, Composer(clock), poets, clock.now())
    return list(db.query("SELECT * FROM assignments ORDER BY id"))


def reply(row: dict, sender: str, body: str, *, token: bool = True, headers=None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = f"poets+c-{row['token']}@example.org" if token else "poets@example.org"
    msg["Subject"] = "Re: Please critique"
    msg["Message-ID"] = f"<reply-{row['id']}-{sender}>"
    msg["In-Reply-To"] = row["message_id"]
    for name, value in (headers or {}).items():
        del msg[name]
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes()


def reviewer_email(db, row) -> str:
    return members.get_by_id(db, row["reviewer_id"]).email


def test_a_reply_to_an_assignment_reaches_the_author(db, clock, worker, assigned) -> None:
    row = assigned[0]
    who = reviewer_email(db, row)
    raw = reply(row, who, "The second stanza sings.\n\nOn Mon, Poets wrote:\n> so much\n")
    assert process_mail(db, clock, worker, raw, f"poets+c-{row['token']}@example.org") == "done"
    [delivery] = queued_mails(db, "critique_delivery")
    assert delivery["To"] == "ann@example.net"
    assert "The second stanza sings." in delivery.get_content()
    assert "so much" not in delivery.get_content()
    assert delivery["In-Reply-To"] == "<draft-1@example.net>"  # threads under her draft
    [receipt] = queued_mails(db, "critique_receipt")
    assert receipt["To"] == who
    [critique] = db.query("SELECT body, trimmed, late FROM critiques")
    assert critique == {
        "body": "The second stanza sings.",
        "trimmed": "On Mon, Poets wrote:\n> so much",
        "late": 0,
    }


def test_a_token_used_from_another_address_is_held(db, clock, worker, assigned) -> None:
    row = assigned[0]
    raw = reply(row, "mallory@example.com", "I am the reviewer, honest.")
    assert process_mail(db, clock, worker, raw, f"poets+c-{row['token']}@example.org") == "held"
    assert queued_mails(db, "critique_delivery") == []
    assert db.execute("SELECT status FROM assignments WHERE id = ?", [row["id"]]).fetchone() == (
        "open",
    )


def test_a_reply_that_lost_its_token_is_found_by_its_thread(db, clock, worker, assigned) -> None:
    row = assigned[0]
    raw = reply(row, reviewer_email(db, row), "Lovely.", token=False)
    assert process_mail(db, clock, worker, raw, "poets@example.org") == "done"
    assert len(queued_mails(db, "critique_delivery")) == 1
    assert db.execute("SELECT COUNT(*) FROM submissions").fetchone() == (1,)  # not a draft


def test_a_late_critique_is_still_delivered_and_marked_late(db, clock, worker, assigned) -> None:
    row = assigned[0]
    clock.advance(days=8)
    with transaction(db):
        assignments.expire_overdue(db, clock, Composer(clock), worker_circle(db))
    raw = reply(row, reviewer_email(db, row), "Sorry I'm late: I loved it.")
    assert process_mail(db, clock, worker, raw, f"poets+c-{row['token']}@example.org") == "done"
    [delivery] = queued_mails(db, "critique_delivery")
    assert "(a little after the due date)" in delivery.get_content()
    assert db.execute("SELECT late FROM critiques").fetchone() == (1,)


def test_an_out_of_office_reply_pauses_the_member_and_passes_the_work_on(
    db,
    clock,
    worker,
    poets,
) -> None:
    from mailcircle.circle import circles

    for name in ("dee", "eve"):
        members.add(db, clock, poets, f"{name}@example.net")
    circle = circles.set_setting(db, poets, "min_reviews", "3")
    assert (
        process_mail(db, clock, worker, draft(), "poets@example.org", "ann@example.net") == "done"
    )
    with transaction(db):
        assignments.start_round(db, clock, Composer(clock), circle, clock.now())
    row = next(iter(db.query("SELECT * FROM assignments ORDER BY id")))
    who = reviewer_email(db, row)
    raw = reply(
        row,
        who,
        "I am away until April.",
        headers={"Auto-Submitted": "auto-replied", "Subject": "Out of Office"},
    )
    assert process_mail(db, clock, worker, raw, f"poets+c-{row['token']}@example.org") == "done"
    assert members.find(db, worker_circle(db), who).status == "paused"
    statuses = dict(db.execute("SELECT id, status FROM assignments").fetchall())
    assert statuses[row["id"]] == "passed_on"
    backups = list(db.query("SELECT * FROM assignments WHERE backup_for = ?", [row["id"]]))
    assert len(backups) == 1 and backups[0]["reviewer_id"] != row["reviewer_id"]
    assert (
        queued_mails(db, "critique_delivery") == [] and queued_mails(db, "critique_receipt") == []
    )
    [backup_mail] = [m for m in queued_mails(db, "assignment") if "step in" in m["Subject"]]
    due = assignments.due_text(clock.now() + timedelta(days=3), members.get_by_id(db, 1))
    assert due.split(" at ")[0] in backup_mail.get_content()


def worker_circle(db):
    from mailcircle.circle import circles

    return circles.get(db, "poets@example.org")


def test_moderators_are_told_when_a_round_is_short_of_reviewers(db, clock, worker, poets) -> None:
    members.add(db, clock, poets, "mo@example.net", "Mo", role=members.MODERATOR)
    process_mail(db, clock, worker, draft(), "poets@example.org", "ann@example.net")
    with transaction(db):
        first = assignments.start_round(db, clock, Composer(clock), poets, clock.now())
    assert first.plan.short == () and queued_mails(db, "moderator_notice") == []
    circle = worker_circle(db)
    from mailcircle.circle import circles

    circle = circles.set_setting(db, circle, "reviews_per_draft", "5")
    process_mail(
        db,
        clock,
        worker,
        draft(message_id="<second@example.net>", subject="Second"),
        "poets@example.org",
        "ann@example.net",
    )
    clock.advance(days=7)
    with transaction(db):
        assignments.start_round(db, clock, Composer(clock), circle, clock.now())
    [notice] = queued_mails(db, "moderator_notice")
    assert notice["To"] == "mo@example.net"
    assert notice["Subject"] == "[Poets moderators] Round 2: not enough reviewers"
    assert '"Second" got 3 reviewer(s), not 5' in notice.get_content()


def test_a_draft_over_the_word_limit_waits_and_the_author_is_told(db, clock, worker, poets) -> None:
    from mailcircle.circle import circles

    circles.set_setting(db, poets, "max_words", "5")
    process_mail(
        db,
        clock,
        worker,
        draft(body="one two three four five six seven"),
        "poets@example.org",
        "ann@example.net",
    )
    [ack] = queued_mails(db, "submission_ack")
    assert "the circle reads drafts of up to 5 words, and this one is longer" in ack.get_content()
    with transaction(db):
        result = assignments.start_round(db, clock, Composer(clock), worker_circle(db), clock.now())
    assert [(d.submission_id, d.reason) for d in result.plan.deferred] == [(1, "too_long")]
