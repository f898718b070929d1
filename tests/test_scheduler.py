"""run_due: every job of every circle, each on its own (mailcircle/scheduler.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import process_mail, queued_mails

from mailcircle.circle import circles, members
from mailcircle.clock import FakeClock
from mailcircle.inbound.process import Worker
from mailcircle.outbound.compose import Composer
from mailcircle.scheduler import run_due

SUNDAY_EVENING = datetime(2026, 3, 8, 18, 0, tzinfo=UTC)  # digests are due (members in UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(SUNDAY_EVENING)


def strangers_post() -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "zed@else.net", "poets+talk@example.org", "Hi"
    msg["Message-ID"] = "<zed-1@else.net>"
    msg.set_content("Hello all\n")
    return msg.as_bytes()


def test_one_failing_job_never_stops_the_others(db, clock, poets, tmp_path: Path) -> None:
    # The digests job fails for real: the circle's own digest template is broken.
    own = tmp_path / "templates"
    own.mkdir()
    (own / "digest.txt").write_text("Dear {{ member_name }}, no subject line here\n")
    poets = circles.set_setting(db, poets, "templates_dir", str(own))
    members.add(db, clock, poets, "mo@example.net", "Mo", role=members.MODERATOR)
    worker = Worker(db, clock, Composer(clock))
    # ... and the talk job, which runs after it, has work: a stranger's post is held.
    assert process_mail(db, clock, worker, strangers_post(), "poets+talk@example.org") == "held"

    report = run_due(db, clock, Composer(clock))

    assert report.errors == [
        "poets@example.org digests: template digest.txt must start with a 'Subject:' line"
    ]
    assert report.digests == 0 and queued_mails(db, "digest") == []  # its writes rolled back
    assert report.talk == 2  # the job after the failing one ran: moderators and Zed are told
    [notice] = queued_mails(db, "moderator_notice")
    assert notice["To"] == "mo@example.net"
    [told] = queued_mails(db, "talk_held")
    assert told["To"] == "zed@else.net"

    # The failure was that job's alone: with the template mended, the digests go out.
    (own / "digest.txt").unlink()
    report = run_due(db, clock, Composer(clock))
    assert report.errors == []
    assert report.digests == 3
    assert report.talk == 0  # told once
