"""Six weeks of a circle, through real SMTP, with a fake clock moved forward.

`mailcircle serve`'s parts run in-process (so they share the fake clock); drafts and
critiques arrive over SMTP from smtplib; everything the circle sends is captured by an
aiosmtpd relay; the scheduler is driven with `mailcircle run-due --now`, as cron would.
"""

from __future__ import annotations

import smtplib
import time
from collections import Counter
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import Captured, CapturingRelay, free_port, write_settings

from mailcircle import config
from mailcircle import db as database
from mailcircle.cli import main
from mailcircle.clock import FakeClock
from mailcircle.service import Service

START = "2026-03-04T12:00:00+00:00"  # a Wednesday; rounds start on Mondays at 09:00 UTC
AUTHORS = ("ann", "ben", "cid", "dee")
EVERYONE = (*AUTHORS, "eve")


class Circle:
    def __init__(self, tmp_path: Path, relay: CapturingRelay) -> None:
        from datetime import datetime

        self.relay = relay
        self.port = free_port()
        self.config = write_settings(
            tmp_path / "mailcircle.toml", smtp_port=self.port, relay_port=relay.port
        )
        self.clock = FakeClock(datetime.fromisoformat(START))
        self.cli("circle", "create", "poets@example.org", "--name", "Poets")
        self.cli("circle", "set", "poets@example.org", "sender_check", "accept")
        for name in EVERYONE:
            self.cli(
                "members", "add", "poets@example.org", f"{name}@example.net", "--name", name.title()
            )
        for key, value in (
            ("reviews_per_draft", "2"),
            ("min_reviews", "2"),
            ("participation_needed", "2"),
            ("participation_window", "2"),
            ("backup_days", "3"),
        ):
            self.cli("circle", "set", "poets@example.org", key, value)
        self.db = database.connect(tmp_path / "circle.db")
        # created "now" by the fake clock, not by the real one the CLI used
        self.db.execute("UPDATE circles SET created_at = ?", [START])
        self.service = Service(config.load(self.config), clock=self.clock, poll_seconds=0.2)
        self.service.start()
        self.seen = 0

    def cli(self, *args: str) -> str:
        result = CliRunner().invoke(main, ["--config", str(self.config), *args])
        assert result.exit_code == 0, result.output
        return result.output

    def at(self, iso: str) -> None:
        from datetime import datetime

        target = datetime.fromisoformat(iso)
        assert target >= self.clock.now()
        self.clock.advance(seconds=(target - self.clock.now()).total_seconds())

    def run_due(self) -> str:
        return self.cli("run-due", "--now", self.clock.now().isoformat())

    def send(self, sender: str, to: str, subject: str, body: str, in_reply_to: str = "") -> None:
        msg = EmailMessage()
        msg["From"] = f"{sender.title()} <{sender}@example.net>"
        msg["To"] = to
        msg["Subject"] = subject
        msg["Message-ID"] = f"<{time.monotonic_ns()}.{sender}@example.net>"
        if in_reply_to:
            msg["In-Reply-To"] = msg["References"] = in_reply_to
        msg.set_content(body)
        with smtplib.SMTP("127.0.0.1", self.port) as client:
            client.send_message(msg)
        self.settle()

    def submit(self, author: str, title: str) -> None:
        self.send(author, "poets@example.org", title, f"{title}\n  by {author}\n\nthe end\n")

    def critique(self, assignment: Captured, words: str) -> None:
        message = assignment.message
        reviewer = assignment.rcpt_tos[0].partition("@")[0]
        quoted = "\n".join("> " + line for line in message.get_content().splitlines()[:5])
        self.send(
            reviewer,
            message["Reply-To"],
            "Re: " + message["Subject"],
            f"{words}\n\nOn Mon, Poets <poets@example.org> wrote:\n{quoted}\n",
            in_reply_to=message["Message-ID"],
        )

    def settle(self) -> None:
        """Wait until the worker has dealt with every inbound mail and the outbox is empty."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            new = self.db.execute("SELECT COUNT(*) FROM spool WHERE status = 'new'").fetchone()[0]
            queued = self.db.execute(
                "SELECT COUNT(*) FROM outbox WHERE status = 'queued'"
            ).fetchone()[0]
            sent = self.db.execute("SELECT COUNT(*) FROM outbox WHERE status = 'sent'").fetchone()[
                0
            ]
            if not new and not queued and len(self.relay.mails) >= sent:
                return
            self.service._outbox_wake.set()
            time.sleep(0.05)
        raise AssertionError("the circle did not settle")

    def new_mails(self) -> list[Captured]:
        self.settle()
        mails = self.relay.mails[self.seen :]
        self.seen = len(self.relay.mails)
        return mails

    def status(self, sql: str) -> list[tuple]:
        return [tuple(row) for row in self.db.execute(sql).fetchall()]


def kind(mail: Captured) -> str:
    subject = mail.message["Subject"]
    for prefix, name in (
        ("Queued", "ack"),
        ("Please critique", "assignment"),
        ("Could you step in?", "backup"),
        ("Reminder", "reminder"),
        ("A critique of", "critique"),
        ("Your critique of", "receipt"),
    ):
        if subject.startswith(prefix):
            return name
    return subject


def to(mail: Captured) -> str:
    return mail.rcpt_tos[0].partition("@")[0]


@pytest.fixture
def circle(tmp_path: Path, relay: CapturingRelay) -> Iterator[Circle]:
    running = Circle(tmp_path, relay)
    yield running
    running.service.stop()
    running.db.close()


def test_six_weeks_of_a_circle(circle: Circle) -> None:
    # Week 0: four drafts come in and are acknowledged.
    for author in AUTHORS:
        circle.submit(author, f"{author}'s first poem")
    assert Counter(kind(m) for m in circle.new_mails()) == {"ack": 4}

    # Round 1 (Monday 9 March): 4 drafts x 2 reviewers; everyone reviews at least once.
    circle.at("2026-03-09T09:00:00+00:00")
    assert "round 1 sent 8 assignments for 4 drafts" in circle.run_due()
    assert circle.run_due().startswith("0 reminders")  # running it again does nothing
    round1 = circle.new_mails()
    assert Counter(kind(m) for m in round1) == {"assignment": 8}
    assert all(to(m) != m.message["Subject"].split(" by ")[-1].lower() for m in round1)
    assert set(Counter(to(m) for m in round1)) == set(EVERYONE)
    eve_round1 = [m for m in round1 if to(m) == "eve"]

    # Everyone but Eve critiques; each author gets the critique, each reviewer a receipt.
    circle.at("2026-03-10T10:00:00+00:00")
    for mail in round1:
        if to(mail) != "eve":
            circle.critique(mail, f"Dear author, I loved it. -- {to(mail)}")
    delivered = circle.new_mails()
    assert Counter(kind(m) for m in delivered) == {
        "critique": 8 - len(eve_round1),
        "receipt": 8 - len(eve_round1),
    }
    critique = next(m for m in delivered if kind(m) == "critique")
    body = critique.message.get_content()
    assert "Dear author, I loved it." in body and "> " not in body  # the quote is trimmed
    assert critique.message["From"].endswith("via Poets <poets@example.org>")
    assert critique.message["Reply-To"].startswith("poets+r-")

    # Someone else using Eve's reply address is held for a moderator, not delivered.
    circle.send("mallory", eve_round1[0].message["Reply-To"], "Re: critique", "Eve says hi.")
    assert circle.new_mails() == []
    assert circle.status("SELECT status FROM spool ORDER BY id DESC LIMIT 1") == [("held",)]

    # Eve submits too; the ack is ordinary (round 1 is still under way).
    circle.submit("eve", "eve's first poem")
    [ack] = circle.new_mails()
    assert "will wait until you catch up" not in ack.message.get_content()

    # Saturday 14 March: Eve, and only Eve, is reminded (due Monday).
    circle.at("2026-03-14T09:00:00+00:00")
    assert circle.run_due().startswith(f"{len(eve_round1)} reminders")
    reminders = circle.new_mails()
    assert {(kind(m), to(m)) for m in reminders} == {("reminder", "eve")}

    # The authors submit their next drafts during the week.
    for author in AUTHORS:
        circle.submit(author, f"{author}'s second poem")
    circle.new_mails()

    # Round 2 (Monday 16 March): Eve's work expires and passes to backups; Eve is held
    # back, so her draft waits, but she still gets assignments.
    circle.at("2026-03-16T09:00:00+00:00")
    output = circle.run_due()
    assert f"{len(eve_round1)} assignments expired" in output
    assert "round 2 sent 8 assignments for 4 drafts, 1 drafts wait" in output
    week2 = circle.new_mails()
    backups = [m for m in week2 if kind(m) == "backup"]
    assert len(backups) == len(eve_round1) and all(to(m) != "eve" for m in backups)
    assert "please send your critique by Thursday 19 March" in backups[0].message.get_content()
    round2 = [m for m in week2 if kind(m) == "assignment"]
    assert "eve" in {to(m) for m in round2}
    assert circle.status('SELECT status FROM submissions WHERE title = "eve\'s first poem"') == [
        ("queued",)
    ]

    # A new draft from Eve now gets a plain answer: it waits until she catches up.
    circle.submit("eve", "eve's second poem")
    [ack] = circle.new_mails()
    assert "your draft will wait until you catch up on critiques" in ack.message.get_content()

    # The backups and Eve do their part. One reviewer with two assignments sends one on
    # time and keeps the other back (it will be late).
    circle.at("2026-03-17T10:00:00+00:00")
    loads = Counter(to(m) for m in round2)
    slow = sorted(name for name, load in loads.items() if load == 2 and name != "eve")[0]
    for mail in backups + [m for m in round2 if to(m) != slow]:
        circle.critique(mail, f"Thoughtful notes from {to(mail)}.")
    dee_late = [m for m in round2 if to(m) == slow]
    circle.critique(dee_late[1], f"On time from {slow}.")
    circle.new_mails()
    for author in AUTHORS:
        circle.submit(author, f"{author}'s third poem")
    circle.new_mails()

    # Round 3 (23 March): Dee's kept-back assignment expires; Eve is still held back
    # (one of her last two rounds was missed).
    circle.at("2026-03-23T09:00:00+00:00")
    output = circle.run_due()
    assert "round 3 sent 8 assignments for 4 drafts, 2 drafts wait" in output
    round3 = [m for m in circle.new_mails() if kind(m) == "assignment"]

    # Dee's late critique is still delivered, marked late.
    circle.at("2026-03-23T12:00:00+00:00")
    circle.critique(dee_late[0], "Sorry this is late, but: the ending sings.")
    late = circle.new_mails()
    late_critique = next(m for m in late if kind(m) == "critique")
    assert "(a little after the due date)" in late_critique.message.get_content()
    assert circle.status("SELECT COUNT(*) FROM critiques WHERE late = 1") == [(1,)]

    for mail in round3:
        circle.critique(mail, f"Round three thoughts from {to(mail)}.")
    circle.new_mails()
    for author in AUTHORS:
        circle.submit(author, f"{author}'s fourth poem")
    circle.new_mails()

    # Round 4 (30 March): Eve critiqued in both of her last two rounds: her oldest draft
    # goes out at last.
    circle.at("2026-03-30T09:00:00+00:00")
    assert "round 4 sent 10 assignments for 5 drafts, 1 drafts wait" in circle.run_due()
    round4 = [m for m in circle.new_mails() if kind(m) == "assignment"]
    assert any("eve's first poem" in m.message["Subject"] for m in round4)

    # Rounds 5 and 6: everyone keeps going; rotation spreads the pairs.
    for monday in ("2026-04-06T09:00:00+00:00", "2026-04-13T09:00:00+00:00"):
        circle.at(monday.replace("T09", "T08"))
        for mail in round4:
            circle.critique(mail, f"Notes from {to(mail)}.")
        for author in AUTHORS:
            circle.submit(author, f"{author}'s poem of {monday[:10]}")
        circle.new_mails()
        circle.at(monday)
        circle.run_due()
        round4 = [m for m in circle.new_mails() if kind(m) == "assignment"]
        assert round4
    pairs = circle.status(
        "SELECT DISTINCT a.reviewer_id, s.member_id FROM assignments a"
        " JOIN submissions s ON s.id = a.submission_id"
    )
    assert len(pairs) == 20  # over six rounds, every reviewer read every other author
    assert circle.status("SELECT COUNT(*) FROM spool WHERE status = 'failed'") == [(0,)]
