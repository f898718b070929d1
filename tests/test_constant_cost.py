"""Constant cost per mail: every query the worker, the sender and the scheduler run goes
through an index, never a full scan of a table that grows with the circle's age.

The SQL is captured with sqlite3's trace callback while real mails are processed (a draft,
critiques by token and by References, a reply to a delivered critique, a command, a bounce)
and while the scheduler starts a round and sends digests, on a database seeded with a few
thousand rows of history; each statement then goes through EXPLAIN QUERY PLAN.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import MAILS, draft, queued_mails, spool_one
from hypothesis import given, settings
from hypothesis import strategies as st

from mailcircle.circle import assignments, circles
from mailcircle.clock import FakeClock, iso
from mailcircle.db import transaction
from mailcircle.inbound.process import Worker
from mailcircle.outbound import outbox
from mailcircle.outbound.compose import CONTEXTS, Assignment, Composer, sample_context
from mailcircle.scheduler import run_due

PAST_ROUNDS = 25
DRAFTS_PER_ROUND = 120
MEMBERS = 40
# What EXPLAIN QUERY PLAN may scan: SQLite's own catalogue (read by sqlite-utils) and
# rows made on the fly; anything else scanned in full grows with the circle's age.
# The circles themselves are few (one row per circle, not per mail).
HARMLESS = ("sqlite_master", "sqlite_schema", "CONSTANT ROW", "pragma_", "SCAN circles ")


def seed(db, clock: FakeClock) -> circles.Circle:
    """A circle with 25 past rounds: 3,000 drafts, 6,000 assignments, ~4,500 critiques."""
    circle = circles.create(db, clock, "poets@example.org", "Poets")
    circle = circles.set_setting(db, circle, "sender_check", "accept")  # test mail is unsigned
    past = clock.now() - timedelta(days=7 * (PAST_ROUNDS + 1))
    when = iso(past)
    with transaction(db):
        people = [("ann@example.net", "Ann"), ("ben@example.net", "Ben")]
        people += [(f"m{n}@example.net", f"Member {n}") for n in range(3, MEMBERS + 1)]
        db.conn.executemany(
            "INSERT INTO members (id, circle_id, email, name, status, joined_at, bounce_token)"
            " VALUES (?, ?, ?, ?, 'active', ?, ?)",
            [(n, circle.id, e, name, when, f"b{n}") for n, (e, name) in enumerate(people, 1)],
        )
        serial = 0
        for number in range(1, PAST_ROUNDS + 1):
            starts = iso(past + timedelta(days=7 * number))
            db.execute(
                "INSERT INTO rounds (id, circle_id, number, starts_at, status)"
                " VALUES (?, ?, ?, ?, 'closed')",
                [number, circle.id, number, starts],
            )
            for _ in range(DRAFTS_PER_ROUND):
                serial += 1
                author = serial % MEMBERS + 1
                db.execute(
                    "INSERT INTO spool (id, received_at, source, mail_from, rcpt_to, circle_id,"
                    " message_id, dedupe_key, size, raw, status) VALUES (?, ?, 'smtp', ?, ?, ?,"
                    " ?, ?, 10, x'00', 'done')",
                    [
                        serial,
                        starts,
                        "x@example.net",
                        circle.address,
                        circle.id,
                        f"<d{serial}@x>",
                        f"<d{serial}@x>",
                    ],
                )
                db.execute(
                    "INSERT INTO submissions (id, circle_id, member_id, spool_id, message_id,"
                    " title, body, word_count, status, submitted_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, 'words', 1, 'closed', ?)",
                    [serial, circle.id, author, serial, f"<d{serial}@x>", f"D{serial}", starts],
                )
                for k in (1, 2):
                    aid = serial * 2 + k
                    reviewer = (author + k * 7) % MEMBERS + 1
                    db.execute(
                        "INSERT INTO assignments (id, round_id, submission_id, reviewer_id,"
                        " token, status, assigned_at, due_at, message_id)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [
                            aid,
                            number,
                            serial,
                            reviewer,
                            f"t{aid}",
                            "done" if k == 1 else "expired",
                            starts,
                            starts,
                            f"<a{aid}@x>",
                        ],
                    )
                    if k == 1 or serial % 2:
                        db.execute(
                            "INSERT INTO critiques (assignment_id, spool_id, message_id, body,"
                            " received_at, token, delivered_message_id, thanked_at)"
                            " VALUES (?, ?, ?, 'good', ?, ?, ?, ?)",
                            [
                                aid,
                                serial,
                                f"<c{aid}@x>",
                                starts,
                                f"r{aid}",
                                f"<cd{aid}@x>",
                                starts if serial % 3 else None,
                            ],
                        )
                db.execute(
                    "INSERT INTO outbox (circle_id, purpose, message_id, mail_from, rcpt_to,"
                    " raw, status, attempts, next_attempt_at, created_at, sent_at)"
                    " VALUES (?, 'submission_ack', ?, '', 'x@example.net', x'00', 'sent', 1,"
                    " ?, ?, ?)",
                    [circle.id, f"<ack{serial}@x>", starts, starts, starts],
                )
                db.execute(
                    "INSERT INTO digests (member_id, slot, sent_at) VALUES (?, ?, ?)",
                    [author, f"{starts}#{serial}", starts],
                )
                if serial % 10 == 0:
                    db.execute(
                        "INSERT INTO bounces (member_id, spool_id, kind, received_at)"
                        " VALUES (?, ?, 'soft', ?)",
                        [author, serial, starts],
                    )
    return circle


def live_assignment(db, clock, circle, reviewer_email: str) -> dict:
    """Start a round in which Ben's draft goes to Ann; return Ann's assignment."""
    with transaction(db):
        db.execute("UPDATE submissions SET status = 'closed' WHERE status = 'queued'")
    worker = Worker(db, clock, Composer(clock))
    mail = spool_one(db, clock, draft(sender="Ben <ben@example.net>", message_id="<ben@x>"))
    assert worker.process(mail) == "done"
    with transaction(db):
        db.execute("UPDATE members SET status = 'paused' WHERE id > 2")
        assignments.start_round(db, clock, Composer(clock), circle, clock.now())
        db.execute("UPDATE members SET status = 'active' WHERE id > 2")
    [row] = db.query(
        "SELECT a.* FROM assignments a JOIN members m ON m.id = a.reviewer_id"
        " WHERE m.email = ? AND a.status = 'open'",
        [reviewer_email],
    )
    return row


def full_scans(db, statements: list[str]) -> list[str]:
    """Each statement that scans a table in full, with the plan line that says so."""
    found = []
    for sql in dict.fromkeys(statements):
        verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        if verb not in ("SELECT", "UPDATE", "DELETE", "INSERT", "WITH", "REPLACE"):
            continue
        for row in db.conn.execute("EXPLAIN QUERY PLAN " + sql):
            detail = row[-1]
            if not detail.startswith("SCAN "):
                continue
            if any(name in detail for name in HARMLESS):
                continue
            found.append(f"{detail}\n    in: {' '.join(sql.split())[:300]}")
    return found


@pytest.fixture
def aged(db, clock):
    return seed(db, clock)


def test_every_per_mail_query_uses_an_index(db, clock, aged) -> None:
    circle = aged
    ann_work = live_assignment(db, clock, circle, "ann@example.net")
    worker = Worker(db, clock, Composer(clock))
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    try:
        token_address = circle.action_address("c", ann_work["token"])
        mails = [
            spool_one(db, clock, draft(message_id="<fresh@x>")),
            spool_one(
                db,
                clock,
                draft(
                    to=token_address, subject="Re: x", body="I liked it.\n", message_id="<crit1@x>"
                ),
                to=token_address,
            ),
            spool_one(
                db,
                clock,
                draft(subject="+status", to="poets+status@example.org", message_id="<st@x>"),
                to="poets+status@example.org",
            ),
        ]
        for mail in mails:
            assert worker.process(mail) == "done", mail
        # A critique whose client lost the Reply-To: it threads by References.
        refs = f"<a1@x> <a3@x> {ann_work['message_id']}"
        threaded = spool_one(
            db,
            clock,
            draft(
                subject="Re: x",
                body="Late but here.\n",
                message_id="<crit2@x>",
                extra={"In-Reply-To": ann_work["message_id"], "References": refs},
            ),
        )
        assert worker.process(threaded) in ("done", "held"), threaded
        # The author answers a delivered critique; and a bounce names a member.
        db.conn.set_trace_callback(None)  # the test's own look-up is not the service's
        [delivered] = db.query("SELECT token FROM critiques ORDER BY id DESC LIMIT 1")
        db.conn.set_trace_callback(statements.append)
        reply_to = circle.action_address("r", delivered["token"])
        thanks = spool_one(
            db,
            clock,
            draft(
                sender="Ben <ben@example.net>",
                to=reply_to,
                subject="Re: x",
                body="Thank you!\n",
                message_id="<thx@x>",
            ),
            mail_from="ben@example.net",
            to=reply_to,
        )
        assert worker.process(thanks) == "done"
        bounce_to = circle.action_address("bounce", "b3")
        dsn = (MAILS / "dsn-postfix-user-unknown.eml").read_bytes()
        assert worker.process(spool_one(db, clock, dsn, mail_from="", to=bounce_to)) == "done"
        # Thanks in answer to an acknowledgement (a note), and a post to the circle's talk.
        db.conn.set_trace_callback(None)
        [ack] = db.execute(
            "SELECT message_id FROM outbox WHERE purpose = 'submission_ack' ORDER BY id DESC"
        ).fetchone()
        db.conn.set_trace_callback(statements.append)
        note = draft(
            subject="Re: x",
            body="Thanks!\n",
            message_id="<note@x>",
            extra={"In-Reply-To": ack, "References": ack},
        )
        assert worker.process(spool_one(db, clock, note)) == "done"
        talk_to = circle.action_address("talk")
        post = draft(
            to=talk_to,
            subject="Line breaks?",
            body="How do you break lines?\n",
            message_id="<talk@x>",
        )
        assert worker.process(spool_one(db, clock, post, to=talk_to)) == "done"
        # The sender's queries.
        for mail in outbox.due(db, clock.now()):
            outbox.mark_sent(db, mail.id, clock.now())
        # The scheduler: a round (Monday 09:00) and, on Sunday evening, the digests.
        clock.advance(days=7)
        report = run_due(db, clock, Composer(clock))
        assert report.rounds and not report.errors, report
        clock.advance(days=6, hours=9, minutes=5)
        report = run_due(db, clock, Composer(clock))
        assert report.digests and not report.errors, report
    finally:
        db.conn.set_trace_callback(None)
    assert statements
    scans = full_scans(db, statements)
    assert scans == [], "\n".join(scans)


def test_the_queue_position_counts_only_the_queue(db, clock, aged) -> None:
    """Each acknowledgement names the draft's place among the queued drafts alone (not
    among every draft the circle ever took), read from the queue's covering index."""
    circle = aged
    worker = Worker(db, clock, Composer(clock))
    first = spool_one(db, clock, draft(message_id="<q1@x>"))
    second = spool_one(db, clock, draft(sender="Ben <ben@example.net>", message_id="<q2@x>"))
    assert worker.process(first) == "done"
    assert worker.process(second) == "done"
    acks = queued_mails(db, "submission_ack")[-2:]
    assert ["number 1 in the queue" in ack.get_content() for ack in acks] == [True, False]
    assert "number 2 in the queue" in acks[1].get_content()
    plan = db.execute(
        "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM submissions WHERE circle_id = ? AND status = ?",
        [circle.id, "queued"],
    ).fetchall()
    assert "COVERING INDEX submissions_queue" in plan[0][-1]


def test_history_of_one_member_reads_the_window_only(db, clock, aged) -> None:
    circle = aged
    everyone = assignments.history(db, circle)
    ann = assignments.history(db, circle, reviewer_id=1)
    assert {p.round_number for p in everyone} == set(
        range(PAST_ROUNDS - assignments.HISTORY_ROUNDS + 1, PAST_ROUNDS + 1)
    )
    assert ann == tuple(p for p in everyone if p.reviewer_id == 1) and ann


def test_a_reply_threads_to_the_last_assignment_it_names(db, clock, aged) -> None:
    found = assignments.find_by_message_ids(db, ("<a5@x>", "", "<nothing@x>", "<a7@x>", ""))
    assert found is not None and found["id"] == 7
    assert assignments.find_by_message_ids(db, ("", "<nothing@x>")) is None


def _circle() -> circles.Circle:
    return circles.Circle(1, "poets@example.org", "Poëts", {})


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_the_fast_wire_form_is_the_email_packages_byte_for_byte(name: str) -> None:
    composer = Composer(FakeClock())
    attachments = (("draft.txt", "text/plain", b"a\nb\r\n"), ("p.pdf", "application/pdf", b"%PDF"))
    for extra in ({}, {"attachments": attachments}):
        message = composer.compose(
            _circle(), name, sample_context(name), to="ann@example.net", **extra
        )
        assert outbox.wire_bytes(message) == message.as_bytes(policy=outbox.WIRE)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab é\r\n\t>From-=."), max_size=3000))
def test_any_text_has_the_same_wire_form(text: str) -> None:
    composer = Composer(FakeClock())
    context = Assignment(
        reviewer_name="Ann",
        author_name="Bén",
        circle_name="Poets",
        title=text[:40],
        word_count=1,
        asks=text[:200],
        draft=text,
        due="soon",
        backup=False,
        attachments="",
    )
    message = composer.compose(_circle(), "assignment", context, to="ann@example.net")
    assert outbox.wire_bytes(message) == message.as_bytes(policy=outbox.WIRE)
