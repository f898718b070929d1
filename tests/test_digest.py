"""The weekly digest and engagement days, from the scheduler's job to the mail's parts."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import draft, process_mail, queued_mails

from mailcircle.circle import assignments, digest, engagement, members
from mailcircle.clock import FakeClock
from mailcircle.db import transaction
from mailcircle.inbound.process import Worker
from mailcircle.outbound.compose import Composer
from mailcircle.scheduler import run_due

MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(MONDAY)


def reply(sender: str, to: str, body: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, "Re"
    msg["Message-ID"] = f"<{abs(hash((sender, to, body)))}@example.net>"
    msg.set_content(body)
    return msg.as_bytes()


@pytest.fixture
def week(db, clock, poets):
    """A week in Poets: Ann's draft went out, Ben critiqued it, Ann thanked him."""
    members.add(db, clock, poets, "cid@example.net", "Cid")
    db.execute("UPDATE members SET timezone = 'Europe/Paris' WHERE email = 'ann@example.net'")
    worker = Worker(db, clock, Composer(clock))
    process_mail(
        db, clock, worker, draft(body="SECRET LINE of the unpublished poem\n"), "poets@example.org"
    )
    with transaction(db):
        assignments.start_round(db, clock, Composer(clock), poets, clock.now())
    row = next(iter(db.query("SELECT * FROM assignments WHERE reviewer_id = 2")))
    process_mail(
        db,
        clock,
        worker,
        reply("ben@example.net", f"poets+c-{row['token']}@example.org", "Lovely."),
        f"poets+c-{row['token']}@example.org",
    )
    [token] = db.execute("SELECT token FROM critiques").fetchone()
    process_mail(
        db,
        clock,
        worker,
        reply("ann@example.net", f"poets+r-{token}@example.org", "Thank you, Ben!"),
        f"poets+r-{token}@example.org",
    )
    return worker


def test_each_member_gets_a_digest_at_their_own_local_time(db, clock, poets, week) -> None:
    clock.advance(days=6, hours=8)  # Sunday 17:00 UTC = 18:00 in Paris
    report = run_due(db, clock, Composer(clock))
    assert report.digests == 1
    [ann] = queued_mails(db, "digest")
    assert ann["To"] == "ann@example.net"
    clock.advance(hours=1)  # 18:00 UTC: now Ben's and Cid's
    assert run_due(db, clock, Composer(clock)).digests == 2
    assert run_due(db, clock, Composer(clock)).digests == 0  # once per week, however often run
    assert sorted(m["To"] for m in queued_mails(db, "digest")) == [
        "ann@example.net",
        "ben@example.net",
        "cid@example.net",
    ]


def test_the_digest_says_what_happened_and_never_quotes_a_draft(db, clock, poets, week) -> None:
    clock.advance(days=6, hours=9)
    with transaction(db):
        digest.send_due_digests(db, clock, Composer(clock), poets)
    ben = next(m for m in queued_mails(db, "digest") if m["To"] == "ben@example.net")
    assert ben["Subject"] == "Your week in Poets"
    assert ben["Precedence"] == "list"
    assert ben["Reply-To"] == "poets+digest@example.org"
    assert ben.get_content_type() == "multipart/alternative"
    text = ben.get_body(("plain",)).get_content()
    html = ben.get_body(("html",)).get_content()
    assert '"The Red Wheelbarrow" by Ann' in text
    assert 'Ben on Ann\'s "The Red Wheelbarrow"' in text
    assert "1 author wrote back to thank you this week." in text
    assert "Your standing is good" in text
    assert "poets+digest-off@example.org" in text
    for part in (text, html):
        assert "SECRET LINE" not in part  # unpublished work stays out of archives
    assert "The Red Wheelbarrow" in html and "Ben" in html
    assert "<script" not in html


def test_digest_off_and_on_and_a_reply_to_the_digest(db, clock, poets, week) -> None:
    assert (
        process_mail(
            db,
            clock,
            week,
            reply("cid@example.net", "poets+digest-off@example.org", ""),
            "poets+digest-off@example.org",
        )
        == "done"
    )
    assert queued_mails(db, "digest_answer")[-1]["Subject"] == "Weekly digest off: Poets"
    clock.advance(days=6, hours=9)
    with transaction(db):
        digest.send_due_digests(db, clock, Composer(clock), poets)
    assert "cid@example.net" not in [m["To"] for m in queued_mails(db, "digest")]
    process_mail(
        db,
        clock,
        week,
        reply("cid@example.net", "poets+digest@example.org", "Great week!"),
        "poets+digest@example.org",
    )
    answer = queued_mails(db, "help")[-1]
    assert (
        answer["Subject"] == "Not understood: a reply to the digest (it does not go to the circle)"
    )


def test_a_digest_missed_by_more_than_a_day_is_skipped(db, clock, poets, week) -> None:
    clock.advance(days=8)  # Tuesday: Sunday's digest would arrive two days late
    assert run_due(db, clock, Composer(clock)).digests == 0


def test_an_engagement_day_is_announced_answered_and_prepared(db, clock, poets, week) -> None:
    day_id = engagement.add(db, clock, poets, "2026-03-14", "Finding readers")
    with pytest.raises(Exception, match="is not in the future"):
        engagement.add(db, clock, poets, "2026-03-01", "Too late")
    clock.advance(days=6, hours=9)
    with transaction(db):
        digest.send_due_digests(db, clock, Composer(clock), poets)
    text = queued_mails(db, "digest")[0].get_body(("plain",)).get_content()
    assert "Engagement day: Saturday 14 March 2026, Finding readers" in text
    assert f"poets+rsvp-{day_id}@example.org" in text

    for sender, answer in (("ann@example.net", "yes please"), ("ben@example.net", "No, sorry")):
        process_mail(
            db,
            clock,
            week,
            reply(sender, f"poets+rsvp-{day_id}@example.org", answer),
            f"poets+rsvp-{day_id}@example.org",
        )
    assert [m["Subject"][:7] for m in queued_mails(db, "rsvp_answer")] == ["See you", "Noted: "]

    clock.advance(days=5)  # Friday 13 March: the day before
    assert run_due(db, clock, Composer(clock)).agendas == 1
    [agenda] = queued_mails(db, "agenda")
    assert agenda["To"] == "ann@example.net"
    assert agenda["Subject"] == "Tomorrow: Poets engagement day (Finding readers)"
    assert '"The Red Wheelbarrow" by Ann' in agenda.get_content()
    assert run_due(db, clock, Composer(clock)).agendas == 0


# --- the HTML digest as a reader sees it: rendered by a real headless Chromium ---

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        pytest.fail("Chromium is not installed: run `bash scripts/test-setup.sh`")
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_the_html_digest_renders_with_the_members_name_and_every_title(
    db,
    clock,
    poets,
    week,
    tmp_path: Path,
) -> None:
    clock.advance(days=6, hours=9)
    with transaction(db):
        digest.send_due_digests(db, clock, Composer(clock), poets)
    ann = next(m for m in queued_mails(db, "digest") if m["To"] == "ann@example.net")
    page = tmp_path / "digest.html"
    page.write_text(ann.get_body(("html",)).get_content(), encoding="utf-8")

    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-500:]
    text = html.unescape(re.sub(r"<[^>]+>", " ", dom.stdout))
    assert "Hello Ann" in text
    titles = [row["title"] for row in db.query("SELECT title FROM submissions")]
    assert titles and all(title in text for title in titles)

    shot = tmp_path / "digest.png"
    result = chromium(tmp_path, f"--screenshot={shot}", "--window-size=900,1100", page.as_uri())
    assert result.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_answering_yes_to_the_digest_answers_the_engagement_day(db, clock, poets, week) -> None:
    day_id = engagement.add(db, clock, poets, "2026-03-14", "Finding readers")
    process_mail(
        db,
        clock,
        week,
        reply("cid@example.net", "poets+digest@example.org", "Yes!\n\n> ..."),
        "poets+digest@example.org",
    )
    assert db.execute("SELECT engagement_id, answer FROM engagement_rsvps").fetchall() == [
        (day_id, "yes")
    ]
    assert queued_mails(db, "rsvp_answer")[-1]["To"] == "cid@example.net"


def test_a_long_list_of_names_stops_at_twenty() -> None:
    names = [f"Member {n}" for n in range(1, 314)]
    assert digest._and(names) == ", ".join(names[:20]) + " and 293 others"
    assert digest._and(names[:3]) == "Member 1, Member 2 and Member 3"
    lines = [f"  line {n}" for n in range(41)]
    assert digest._limited(lines, 2000).endswith("  ... and 1960 more")
