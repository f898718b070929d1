"""The circle's talk (poets+talk@), each member's reading choice, members' own settings by
mail, and the digest's conversations and milestones: worker level, then over real SMTP."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from conftest import CapturingRelay, Serve, queued_mails, send
from hypothesis import given
from hypothesis import strategies as st

from mailcircle.circle import assignments, digest, members, profile, talk
from mailcircle.clock import FakeClock
from mailcircle.db import transaction
from mailcircle.errors import MailcircleError
from mailcircle.inbound import spool
from mailcircle.inbound.process import Worker
from mailcircle.outbound.compose import Composer
from mailcircle.scheduler import run_due

MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TALK = "poets+talk@example.org"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(MONDAY)


@pytest.fixture
def worker(db, clock, poets) -> Worker:
    members.add(db, clock, poets, "cid@example.net", "Cid")
    members.add(db, clock, poets, "mo@example.net", "Mo", role=members.MODERATOR)
    return Worker(db, clock, Composer(clock))


_count = iter(range(10_000))


def mail(
    sender: str,
    to: str = TALK,
    subject: str = "Hello",
    body: str = "Hello all\n",
    *,
    message_id: str | None = None,
    attach: tuple[str, str, bytes] | None = None,
    **headers: str,
) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Message-ID"] = message_id or f"<m{next(_count)}@example.net>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    if attach:
        filename, content_type, payload = attach
        maintype, _, subtype = content_type.partition("/")
        msg.add_attachment(payload, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def deliver(db, clock, worker, raw: bytes, to: str = TALK, mail_from: str = "x@example.net"):
    [spool_id] = spool.store(
        db, clock, source="smtp", peer="", mail_from=mail_from, recipients=[(to, 1)], raw=raw
    )
    return worker.process(spool.get(db, spool_id)), spool.get(db, spool_id)


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return body.replace("\r\n", "\n")


# --- pure parts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Readings", "[Poets] Readings"),
        ("Re: [Poets] Readings", "Re: [Poets] Readings"),
        ("RE: Re: [Poets] Readings", "Re: [Poets] Readings"),
        ("[Poets] Re: [Poets] Readings", "Re: [Poets] Readings"),
        ("AW: [poets] Readings", "Re: [Poets] Readings"),
        ("", "[Poets] (no subject)"),
    ],
)
def test_the_subject_tag_is_there_once_and_never_doubled(subject: str, expected: str) -> None:
    assert talk.tagged_subject(subject, "[Poets]") == expected


def test_zones_and_names_are_checked_as_a_member_types_them() -> None:
    assert profile.check_zone("europe/paris") == "Europe/Paris"
    assert profile.check_zone(" America/New York ") == "America/New_York"
    for bad in ("Mars/Olympus", "", "../../etc/passwd", "Europe/Paris; DROP"):
        with pytest.raises(MailcircleError, match="time zone"):
            profile.check_zone(bad)
    assert profile.clean_name("  Ann\x00 \x1b[31mLee\t ") == "Ann [31mLee"
    with pytest.raises(MailcircleError, match="at most 60"):
        profile.clean_name("A" * 61)
    with pytest.raises(MailcircleError, match="cannot contain @"):
        profile.clean_name("admin@example.org")
    winter = datetime(2026, 1, 10, tzinfo=UTC)
    from datetime import timedelta

    assert profile.zone_for_offset(timedelta(hours=1), winter) == "Europe/Paris"
    assert profile.zone_for_offset(timedelta(hours=-5), winter) == "America/New_York"
    assert profile.zone_for_offset(timedelta(hours=5, minutes=30), winter) == "Asia/Kolkata"


# --- a post goes to everyone --------------------------------------------------------------


def test_a_post_reaches_every_member_but_the_sender_once_as_list_mail(db, clock, worker) -> None:
    status, row = deliver(db, clock, worker, mail("Ann <ann@example.net>", message_id="<p1@x>"))
    assert status == "done", row.outcome
    assert row.outcome.endswith("sent to 3 members")
    copies = queued_mails(db, "talk_post")
    assert sorted(m["To"] for m in copies) == [
        "ben@example.net",
        "cid@example.net",
        "mo@example.net",
    ]
    for copy in copies:
        assert copy["From"] == "Ann via Poets <poets+talk@example.org>"
        assert copy["Reply-To"] == TALK
        assert copy["Message-ID"] == "<p1@x>"  # the author's own: every client threads it
        assert copy["Subject"] == "[Poets] Hello"
        assert copy["List-Id"] == '"Poets" <poets.example.org>'
        assert copy["List-Post"] == f"<mailto:{TALK}>"
        assert copy["List-Help"] == "<mailto:poets+help@example.org>"
        assert copy["List-Unsubscribe"] == "<mailto:poets+talk-off@example.org>"
        assert copy["Precedence"] == "list"
        assert copy["Auto-Submitted"] is None  # a person wrote it
        assert "ann@example.net" not in str(copy)  # no member's address shown to another
        assert text_of(copy).startswith("Hello all\n")
    # Delivered twice (an MTA retry), or again as a new spool row: sent once.
    assert deliver(db, clock, worker, mail("ann@example.net", message_id="<p1@x>"))[0] == (
        "duplicate"
    )
    assert len(queued_mails(db, "talk_post")) == 3

    # A reply threads under it, tagged once; to poets@ by mistake it is still talk.
    reply = mail(
        "Ben <ben@example.net>",
        "poets@example.org",
        "Re: [Poets] Hello",
        "Hello Ann!\n",
        message_id="<p2@x>",
        In_Reply_To="<p1@x>",
        References="<p1@x>",
    )
    status, row = deliver(db, clock, worker, reply, "poets@example.org")
    assert status == "done" and "talk post" in row.outcome, row.outcome
    assert db.execute("SELECT COUNT(*) FROM submissions").fetchone() == (0,)  # not a draft
    answers = [m for m in queued_mails(db, "talk_post") if m["Message-ID"] == "<p2@x>"]
    assert sorted(m["To"] for m in answers) == [
        "ann@example.net",
        "cid@example.net",
        "mo@example.net",
    ]
    for answer in answers:
        assert answer["Subject"] == "Re: [Poets] Hello"
        assert (answer["In-Reply-To"], answer["References"]) == ("<p1@x>", "<p1@x>")
    assert db.execute("SELECT thread_id, parent_id FROM talk_posts WHERE id = 2").fetchone() == (
        1,
        1,
    )


def test_the_author_gets_their_own_post_only_if_they_ask_and_reply_to_can_be_the_author(
    db,
    clock,
    worker,
    poets,
) -> None:
    deliver(
        db,
        clock,
        worker,
        mail("ann@example.net", "poets+talk-self@example.org"),
        "poets+talk-self@example.org",
    )
    assert queued_mails(db, "talk_choice")[-1]["Subject"] == "Poets talk: every post as it comes"
    assert "You get a copy of your own posts." in text_of(queued_mails(db, "talk_choice")[-1])
    from mailcircle.circle import circles

    circle = circles.set_setting(db, poets, "talk_reply_to", "author")
    circle = circles.set_setting(db, circle, "talk_subject_tag", "[verse]")
    deliver(db, clock, worker, mail("ann@example.net", subject="Mine too"))
    copies = queued_mails(db, "talk_post")
    assert "ann@example.net" in [m["To"] for m in copies]
    assert {m["Reply-To"] for m in copies} == {"ann@example.net"}
    assert {m["Subject"] for m in copies} == {"[verse] Mine too"}
    with pytest.raises(MailcircleError, match="list or author"):
        circles.set_setting(db, circle, "talk_reply_to", "everyone")


def test_reading_choices_each_digest_off(db, clock, worker, poets) -> None:
    deliver(
        db,
        clock,
        worker,
        mail("cid@example.net", "poets+talk-digest@example.org"),
        "poets+talk-digest@example.org",
    )
    deliver(
        db,
        clock,
        worker,
        mail("mo@example.net", "poets+request@example.org", "talk-off"),
        "poets+request@example.org",
    )
    answers = queued_mails(db, "talk_choice")
    assert [m["Subject"] for m in answers] == [
        "Poets talk: in your weekly digest",
        "Poets talk: off",
    ]
    deliver(
        db,
        clock,
        worker,
        mail("ann@example.net", subject="First acceptance!", body="A journal took my poem!\n"),
    )
    deliver(
        db,
        clock,
        worker,
        mail("ben@example.net", subject="Journals for prose poems?", body="Any tips?\n"),
    )
    assert sorted(m["To"] for m in queued_mails(db, "talk_post")) == [
        "ann@example.net",
        "ben@example.net",
    ]

    # Cid's status says how Cid reads the talk; the help text lists the choices.
    deliver(
        db,
        clock,
        worker,
        mail("cid@example.net", "poets+status@example.org"),
        "poets+status@example.org",
    )
    assert "you read it in your weekly digest" in text_of(queued_mails(db, "status")[-1])
    deliver(
        db,
        clock,
        worker,
        mail("cid@example.net", "poets+help@example.org"),
        "poets+help@example.org",
    )
    assert "talk-digest   collected in your weekly digest" in text_of(queued_mails(db, "help")[-1])

    clock.advance(days=6, hours=9)  # Sunday 18:00 UTC: everyone's digest
    with transaction(db):
        digest.send_due_digests(db, clock, Composer(clock), poets)
    digests = {m["To"]: text_of(m) for m in queued_mails(db, "digest")}
    assert "CONVERSATIONS THIS WEEK" in digests["cid@example.net"]
    assert "A journal took my poem!" in digests["cid@example.net"]  # short posts, whole
    assert '"First acceptance!", Ann started it, 0 replies' in digests["cid@example.net"]
    assert '"Journals for prose poems?", Ben started it' in digests["ann@example.net"]
    assert "A journal took my poem!" not in digests["ann@example.net"]  # she had them as they came
    assert "CONVERSATIONS THIS WEEK" not in digests["mo@example.net"]  # talk off: never


def test_a_strangers_post_is_held_and_moderators_are_told_how_to_release_it(
    db,
    clock,
    worker,
    poets,
) -> None:
    status, row = deliver(db, clock, worker, mail("Zed <zed@else.net>", subject="Buy now"))
    assert status == "held" and "not a member" in row.outcome
    assert queued_mails(db) == []
    assert run_due(db, clock, Composer(clock)).talk == 2
    [notice] = queued_mails(db, "moderator_notice")
    assert notice["To"] == "mo@example.net"
    assert notice["Subject"] == "[Poets moderators] 1 talk post(s) from non-members held"
    assert f'#{row.id} from zed@else.net: "Buy now"' in text_of(notice)
    assert "mailcircle inbox retry ID" in text_of(notice)
    [told] = queued_mails(db, "talk_held")
    assert told["To"] == "zed@else.net" and "poets+join@example.org" in text_of(told)
    assert run_due(db, clock, Composer(clock)).talk == 0  # once
    assert queued_mails(db, "talk_post") == []
    # A flood of posts from strangers never becomes a flood to the moderators.
    for n in range(5):
        deliver(db, clock, worker, mail(f"x{n}@else.net", subject=f"Spam {n}"))
    run_due(db, clock, Composer(clock))
    assert len(queued_mails(db, "moderator_notice")) == 1  # the next within hours, not now
    # Released: the moderator makes Zed a member and processes the post again.
    members.add(db, clock, poets, "zed@else.net", "Zed")
    assert worker.process(spool.get(db, row.id)) == "done"
    assert len(queued_mails(db, "talk_post")) == 4


@pytest.mark.parametrize(
    ("attach", "body", "words"),
    [
        (
            ("chapter-one.docx", "application/octet-stream", b"PK\x03\x04 draft"),
            "See attached\n",
            "looks like a draft",
        ),
        (("poem.pdf", "application/pdf", b"%PDF-1.4"), "Here\n", "looks like a draft"),
        (None, "word " * 1600, "1600 words long"),
        (("photo.jpg", "image/jpeg", b"\xff" * 1_100_000), "Our reading!\n", "up to 1024 KB"),
    ],
)
def test_drafts_and_big_files_never_go_out_through_talk(
    db, clock, worker, attach, body, words
) -> None:
    status, row = deliver(db, clock, worker, mail("ann@example.net", body=body, attach=attach))
    assert status == "refused", row.outcome
    assert queued_mails(db, "talk_post") == []
    [answer] = queued_mails(db, "talk_refused")
    assert answer["To"] == "ann@example.net"
    assert words in text_of(answer)
    if "draft" in words:
        assert "poets@example.org" in text_of(answer)  # where drafts go


def test_a_small_picture_goes_along_and_automatic_mail_never_goes_out(db, clock, worker) -> None:
    picture = ("reading.jpg", "image/jpeg", b"\xff\xd8" + b"\x00" * 2000)
    assert deliver(db, clock, worker, mail("ann@example.net", attach=picture))[0] == "done"
    copy = queued_mails(db, "talk_post")[0]
    assert [p.get_filename() for p in copy.iter_attachments()] == ["reading.jpg"]
    for headers in (
        {"Auto_Submitted": "auto-replied"},
        {"Precedence": "bulk"},
        {"List_Id": "<x.y>"},
    ):
        assert deliver(db, clock, worker, mail("ben@example.net", **headers))[0] == "ignored"
    assert deliver(db, clock, worker, mail("ben@example.net", subject="Out of office"))[0] == (
        "ignored"
    )
    assert len(queued_mails(db, "talk_post")) == 3  # only Ann's picture post


# --- members' own settings -------------------------------------------------------------


def test_timezone_and_name_by_mail(db, clock, worker, poets) -> None:
    # Still on UTC: the status offers the zone the mail's Date: header suggests.
    status_mail = mail(
        "ben@example.net", "poets+status@example.org", Date="Mon, 02 Mar 2026 10:00:00 +0100"
    )
    deliver(db, clock, worker, status_mail, "poets+status@example.org")
    status = text_of(queued_mails(db, "status")[-1])
    assert "Your time zone: UTC." in status
    assert "may live in Europe/Paris time" in status and "poets+timezone@example.org" in status

    deliver(
        db,
        clock,
        worker,
        mail("ben@example.net", "poets+timezone@example.org", "Mars/Olympus"),
        "poets+timezone@example.org",
    )
    answer = queued_mails(db, "member_setting")[-1]
    assert answer["Subject"] == "Your time zone was not changed"
    assert '"Mars/Olympus" is not a time zone' in text_of(answer)
    assert members.find(db, poets, "ben@example.net").timezone == "UTC"

    deliver(
        db,
        clock,
        worker,
        mail("ben@example.net", "poets+request@example.org", "timezone asia/tokyo"),
        "poets+request@example.org",
    )
    answer = queued_mails(db, "member_setting")[-1]
    assert answer["Subject"] == "Your time zone in Poets: Asia/Tokyo"
    assert "It is now Monday 2 March at 18:00 (Asia/Tokyo)" in text_of(answer)
    assert members.find(db, poets, "ben@example.net").timezone == "Asia/Tokyo"

    deliver(
        db,
        clock,
        worker,
        mail("ben@example.net", "poets+name@example.org", "Ben\x07 Okri  Jr"),
        "poets+name@example.org",
    )
    assert members.find(db, poets, "ben@example.net").name == "Ben Okri Jr"
    assert queued_mails(db, "member_setting")[-1]["Subject"] == "Your name in Poets: Ben Okri Jr"
    deliver(
        db,
        clock,
        worker,
        mail("ben@example.net", "poets+name@example.org", "", " \n"),
        "poets+name@example.org",
    )
    assert queued_mails(db, "member_setting")[-1]["Subject"] == "Your name was not changed"
    deliver(db, clock, worker, mail("ben@example.net", subject="Hi"))
    assert (
        queued_mails(db, "talk_post")[0]["From"] == "Ben Okri Jr via Poets <poets+talk@example.org>"
    )
    # Strangers cannot set anything.
    deliver(
        db,
        clock,
        worker,
        mail("zed@else.net", "poets+name@example.org", "Boss"),
        "poets+name@example.org",
    )
    assert members.find(db, poets, "zed@else.net") is None


def test_timezone_moves_the_due_date_in_the_next_assignment_and_the_digest_hour(
    db,
    clock,
    worker,
    poets,
) -> None:
    deliver(
        db,
        clock,
        worker,
        mail("ben@example.net", "poets+timezone@example.org", "Asia/Tokyo"),
        "poets+timezone@example.org",
    )
    deliver(
        db,
        clock,
        worker,
        mail("ann@example.net", "poets@example.org", "Fog", "the fog comes\n"),
        "poets@example.org",
    )
    ack = queued_mails(db, "submission_ack")[-1]
    assert "The next round starts Monday 9 March 2026 at 09:00 (UTC)" in text_of(ack)  # Ann: UTC
    with transaction(db):
        assignments.start_round(db, clock, Composer(clock), poets, clock.now())
    by_reviewer = {m["To"]: text_of(m) for m in queued_mails(db, "assignment")}
    assert (
        "send your critique by Monday 9 March at 18:00 (Asia/Tokyo)"
        in by_reviewer["ben@example.net"]
    )
    assert "send your critique by Monday 9 March at 09:00 (UTC)" in by_reviewer["cid@example.net"]
    # Sunday 18:00 in Tokyo is 09:00 UTC: Ben's digest comes then, the others' at 18:00 UTC.
    clock.advance(days=5, hours=23, minutes=59)  # Sunday 08:59 UTC
    assert run_due(db, clock, Composer(clock)).digests == 0
    clock.advance(minutes=1)
    run_due(db, clock, Composer(clock))
    assert [m["To"] for m in queued_mails(db, "digest")] == ["ben@example.net"]
    assert "Monday 9 March at 18:00 (Asia/Tokyo)" in text_of(queued_mails(db, "digest")[0])


# --- milestones ---------------------------------------------------------------------------


def test_the_digest_names_milestones_plainly(db, clock, worker, poets) -> None:
    composer = Composer(clock)
    deliver(
        db,
        clock,
        worker,
        mail("ann@example.net", "poets@example.org", "Fog", "the fog\n"),
        "poets@example.org",
    )
    with transaction(db):
        assignments.start_round(db, clock, composer, poets, clock.now())
    ben_task = next(
        iter(
            db.query(
                "SELECT a.* FROM assignments a JOIN members m ON m.id = a.reviewer_id"
                " WHERE m.email = 'ben@example.net'"
            )
        )
    )
    # Ben has four critiques already from earlier seasons: this one is his fifth.
    for n in range(4):
        db.execute(
            "INSERT INTO critiques (assignment_id, spool_id, message_id, body, received_at)"
            " VALUES (?, 1, ?, 'old', '2025-01-01T00:00:00+00:00')",
            [ben_task["id"], f"<old{n}@x>"],
        )
    token = ben_task["token"]
    deliver(
        db,
        clock,
        worker,
        mail("ben@example.net", f"poets+c-{token}@example.org", "Re: Fog", "Lovely.\n"),
        f"poets+c-{token}@example.org",
    )
    [(critique_token,)] = db.execute(
        "SELECT token FROM critiques WHERE token IS NOT NULL"
    ).fetchall()
    address = f"poets+r-{critique_token}@example.org"
    deliver(db, clock, worker, mail("ann@example.net", address, "Re", "Thank you, Ben!\n"), address)
    clock.advance(days=1)
    deliver(
        db,
        clock,
        worker,
        mail("ann@example.net", "poets@example.org", "fog", "the fog comes\non little cat feet\n"),
        "poets@example.org",
    )
    clock.advance(days=5, hours=9)
    with transaction(db):
        digest.send_due_digests(db, clock, composer, poets)
    text = text_of(next(m for m in queued_mails(db, "digest") if m["To"] == "cid@example.net"))
    section = text.split("WORTH A SMILE\n")[1].split("\n\n")[0]
    assert section.splitlines() == [
        '  Ann shared a first draft with the circle: "Fog".',
        '  Ann revised "fog" and sent it again.',
        "  Ben has now given 5 critiques.",
        "  Ben was thanked for a critique.",
    ]


# --- over real SMTP -------------------------------------------------------------------------


def wait_for_status(serve: Serve, status: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = serve.cli("inbox", "list", "--status", status)
        if status in listing:
            return listing
        time.sleep(0.1)
    raise AssertionError(f"no inbound mail became {status} within {timeout}s")


def test_talk_over_real_smtp(serve: Serve, relay: CapturingRelay, smtp_port: int) -> None:
    serve.cli("members", "add", "poets@example.org", "cid@example.net", "--name", "Cid")
    serve.cli("members", "add", "poets@example.org", "dee@example.net", "--name", "Dee")
    serve.start(smtp_port)
    for who, choice in (("cid", "digest"), ("dee", "off")):
        address = f"poets+talk-{choice}@example.org"
        send(
            smtp_port,
            mail(f"{who}@example.net", address),
            mail_from=f"{who}@example.net",
            to=[address],
        )
    relay.wait_for(2)

    post = mail(
        "Ann <ann@example.net>",
        subject="Readings",
        body="Who reads on Friday?\n",
        message_id="<ann-1@example.net>",
    )
    send(smtp_port, post, mail_from="ann@example.net", to=[TALK])
    [copy] = [m for m in relay.wait_for(3) if m.message["Message-ID"] == "<ann-1@example.net>"]
    assert copy.rcpt_tos == ["ben@example.net"]  # not Ann, not Cid (digest), not Dee (off)
    assert copy.mail_from.startswith("poets+bounce-")
    message = copy.message
    assert message["From"] == "Ann via Poets <poets+talk@example.org>"
    assert (message["Subject"], message["List-Post"]) == ("[Poets] Readings", f"<mailto:{TALK}>")

    # Ben hits reply: his client writes to the Reply-To and threads by References.
    answer = mail(
        "Ben <ben@example.net>",
        message["Reply-To"],
        "Re: " + message["Subject"],
        "Me! Count me in.\n",
        message_id="<ben-1@example.net>",
        In_Reply_To=message["Message-ID"],
        References=message["Message-ID"],
    )
    send(smtp_port, answer, mail_from="ben@example.net", to=[message["Reply-To"]])
    [threaded] = [m for m in relay.wait_for(4) if m.message["Message-ID"] == "<ben-1@example.net>"]
    assert threaded.rcpt_tos == ["ann@example.net"]
    assert threaded.message["References"] == "<ann-1@example.net>"
    assert threaded.message["Subject"] == "Re: [Poets] Readings"

    stranger = mail("zed@else.net", subject="Cheap pills")
    send(smtp_port, stranger, mail_from="zed@else.net", to=[TALK])
    assert "held" in wait_for_status(serve, "held")
    time.sleep(0.5)  # the worker is done with it; nothing more goes out to members
    # Nothing goes to members; the scheduler may tell the stranger (once a week) and the
    # moderators (none here) that it waits.
    to_members = [m for m in relay.mails if "zed@else.net" not in m.rcpt_tos]
    assert all("Cheap pills" not in m.raw.decode(errors="replace") for m in to_members)
    assert len(to_members) == 4


@given(st.text(alphabet="Re: []PotsAWvx\t", max_size=60))
def test_tagging_a_subject_twice_changes_nothing(subject: str) -> None:
    once = talk.tagged_subject(subject, "[Poets]")
    assert talk.tagged_subject(once, "[Poets]") == once
    assert once.startswith(("[Poets] ", "Re: [Poets] "))
    assert not once.removeprefix("Re: ").removeprefix("[Poets] ").lower().startswith("re:")


def test_a_subject_with_thousands_of_prefixes_is_read_in_one_pass() -> None:
    subject = "Re: [Poets] " * 50_000 + "Readings"
    assert talk.tagged_subject(subject, "[Poets]") == "Re: [Poets] Readings"
