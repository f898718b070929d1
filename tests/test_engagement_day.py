"""A whole engagement day by mail, with the fake clock: RSVPs, agenda items by mail and on
the command line, the agenda the day before, the kick-off on the morning, three posts that
day in the circle's talk, and the summary in the next digest."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import draft, process_mail, queued_mails, write_settings

from mailcircle.circle import assignments, engagement, members
from mailcircle.cli import main
from mailcircle.clock import FakeClock
from mailcircle.db import transaction
from mailcircle.inbound.process import Worker
from mailcircle.outbound.compose import Composer
from mailcircle.scheduler import run_due

MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TALK = "poets+talk@example.org"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(MONDAY)


def mail(sender: str, to: str, subject: str, body: str = "\n", **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Message-ID"] = f"<{abs(hash((sender, to, subject, body)))}@example.net>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return body.replace("\r\n", "\n")


def test_a_whole_engagement_day_by_mail(db, db_path: Path, clock, poets, tmp_path) -> None:
    members.add(db, clock, poets, "cid@example.net", "Cid")
    members.add(db, clock, poets, "mo@example.net", "Mo", role=members.MODERATOR)
    worker = Worker(db, clock, Composer(clock))
    process_mail(db, clock, worker, draft(), "poets@example.org")  # Ann's "The Red Wheelbarrow"
    with transaction(db):
        assignments.start_round(db, clock, Composer(clock), poets, clock.now())
    day_id = engagement.add(db, clock, poets, "2026-03-07", "Finding readers")

    # RSVPs by mail: Ann, Ben and Mo are coming, Cid is not.
    rsvp = f"poets+rsvp-{day_id}@example.org"
    for sender, answer in (("ann", "Yes!"), ("ben", "yes"), ("mo", "yes"), ("cid", "No, sorry")):
        process_mail(db, clock, worker, mail(f"{sender}@example.net", rsvp, "Re", answer), rsvp)

    # Agenda items: Mo by mail, a moderator on the command line; Ben is not a moderator.
    agenda = "poets+agenda@example.org"
    process_mail(
        db, clock, worker, mail("mo@example.net", agenda, "Where to send prose poems"), agenda
    )
    assert (
        queued_mails(db, "agenda_answer")[-1]["Subject"]
        == "On the agenda: Where to send prose poems"
    )
    process_mail(db, clock, worker, mail("ben@example.net", agenda, "My own item"), agenda)
    refused = queued_mails(db, "agenda_answer")[-1]
    assert refused["Subject"] == "Not added to the agenda"
    assert "Only the circle's moderators" in text_of(refused)
    settings = write_settings(tmp_path / "mailcircle.toml", smtp_port=1, relay_port=None)
    assert db_path.parent == settings.parent
    cli = CliRunner().invoke(
        main,
        ["--config", str(settings), "engagement", "agenda", "poets@example.org", "2026-03-07"]
        + ["Reading aloud: who has tried it?"],
    )
    assert cli.output == "Poets: on the agenda of 2026-03-07: Reading aloud: who has tried it?\n"
    cli = CliRunner().invoke(
        main,
        ["--config", str(settings), "engagement", "agenda", "poets@example.org"]
        + ["2026-03-08", "x"],
    )
    assert cli.exit_code == 1
    assert cli.output == (
        "Error: Poets has no engagement day on 2026-03-08 (see `mailcircle engagement list`)\n"
    )

    clock.advance(days=4)  # Friday: the agenda the day before, no kick-off yet
    assert run_due(db, clock, Composer(clock)).agendas == 3
    process_mail(
        db, clock, worker, mail("cid@example.net", TALK, "Friday thought", "Not the day yet."), TALK
    )

    clock.advance(hours=22, minutes=59)  # Saturday 07:59
    assert run_due(db, clock, Composer(clock)).talk == 0
    clock.advance(minutes=1)  # 08:00: the kick-off, to those who said yes
    assert run_due(db, clock, Composer(clock)).talk == 3
    assert run_due(db, clock, Composer(clock)).talk == 0  # once
    kickoffs = queued_mails(db, "engagement_kickoff")
    assert sorted(m["To"] for m in kickoffs) == [
        "ann@example.net",
        "ben@example.net",
        "mo@example.net",
    ]
    assert len({m["Message-ID"] for m in kickoffs}) == 1  # one thread for the day
    kickoff = kickoffs[0]
    assert kickoff["Subject"] == "Today: Poets engagement day (Finding readers)"
    assert kickoff["Reply-To"] == TALK and kickoff["List-Post"] == f"<mailto:{TALK}>"
    body = text_of(kickoff)
    assert "  - Where to send prose poems\n  - Reading aloud: who has tried it?" in body
    assert '"The Red Wheelbarrow" by Ann' in body and TALK in body

    # Three posts that day: Ann answers the kick-off, Ben answers Ann, Cid starts a thread.
    first = mail(
        "ann@example.net",
        TALK,
        "Re: " + kickoff["Subject"],
        "Could we start with The Red Wheelbarrow? I am unsure about its line breaks.",
        In_Reply_To=kickoff["Message-ID"],
        References=kickoff["Message-ID"],
    )
    assert process_mail(db, clock, worker, first, TALK) == "done"
    [ann_id] = [
        m["Message-ID"] for m in queued_mails(db, "talk_post")[-4:] if "line breaks" in text_of(m)
    ][:1]
    clock.advance(hours=2)
    second = mail(
        "ben@example.net",
        TALK,
        "Re: [Poets] Re: " + kickoff["Subject"],
        "The breaks are the poem. Keep them.",
        In_Reply_To=ann_id,
        References=f"{kickoff['Message-ID']} {ann_id}",
    )
    assert process_mail(db, clock, worker, second, TALK) == "done"
    clock.advance(hours=3)
    third = mail("cid@example.net", TALK, "Open mics", "Anyone reading at an open mic soon?")
    assert process_mail(db, clock, worker, third, TALK) == "done"
    marked = db.execute("SELECT subject, engagement_id FROM talk_posts ORDER BY id").fetchall()
    assert marked == [
        ("Friday thought", None),
        ("Today: Poets engagement day (Finding readers)", day_id),
        ("Today: Poets engagement day (Finding readers)", day_id),
        ("Open mics", day_id),
    ]
    copy = next(
        m
        for m in queued_mails(db, "talk_post")
        if m["To"] == "mo@example.net" and "Open mics" in m["Subject"]
    )
    assert text_of(copy).startswith("[Part of the Poets engagement day: Finding readers]\n")
    bens = [m for m in queued_mails(db, "talk_post") if "Keep them." in text_of(m)]
    assert {m["Subject"] for m in bens} == {
        "Re: [Poets] Today: Poets engagement day (Finding readers)"
    }

    clock.advance(days=1, hours=18 - 13)  # Sunday 18:00: the digest sums the day up
    assert run_due(db, clock, Composer(clock)).digests == 4
    digest = text_of(next(m for m in queued_mails(db, "digest") if m["To"] == "cid@example.net"))
    section = digest.split("THE ENGAGEMENT DAY\n")[1].split("\n\n")[0]
    assert section == (
        '  Saturday 7 March, "Finding readers": 3 posts by Ann, Ben and Cid.\n'
        '  Threads: "Today: Poets engagement day (Finding readers)" (2 posts);'
        ' "Open mics" (1 post)\n'
        '  Drafts discussed: "The Red Wheelbarrow"'
    )


def test_engagement_list_shows_each_day_by_date_with_its_yes_answers(
    db, clock, poets, tmp_path
) -> None:
    settings = write_settings(tmp_path / "mailcircle.toml", smtp_port=1, relay_port=None)

    def listing() -> str:
        cli = CliRunner().invoke(
            main, ["--config", str(settings), "engagement", "list", "poets@example.org"]
        )
        assert cli.exit_code == 0, cli.output
        return cli.output

    assert listing() == "Poets has no engagement day yet.\n"
    later = engagement.add(db, clock, poets, "2026-04-04", "Titles")
    sooner = engagement.add(db, clock, poets, "2026-03-07", "Finding readers")
    ann, ben = (members.find(db, poets, f"{name}@example.net") for name in ("ann", "ben"))
    assert ann and ben
    engagement.rsvp(db, clock, sooner, ann.id, True)
    engagement.rsvp(db, clock, sooner, ben.id, True)
    engagement.rsvp(db, clock, later, ann.id, False)
    assert [line.split(None, 2) for line in listing().splitlines()] == [
        ["DATE", "YES", "TOPIC"],
        ["2026-03-07", "2", "Finding readers"],
        ["2026-04-04", "0", "Titles"],
    ]
