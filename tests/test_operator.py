"""The operator's toolbox, through the real command line: status, inject, import, export,
erase, set, circle remove, run-due --now, logging, and which database a command uses."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import CapturingRelay, Serve, draft, free_port, wait_for_port, write_settings

from mailcircle import db as database
from mailcircle.circle import assignments, members
from mailcircle.cli import main
from mailcircle.clock import FakeClock
from mailcircle.db import transaction
from mailcircle.inbound import spool
from mailcircle.inbound.process import Worker
from mailcircle.outbound import outbox
from mailcircle.outbound.compose import Composer


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mailcircle.toml"
    path.write_text('database = "circle.db"\n')
    return path


@pytest.fixture
def run(config: Path):
    def invoke(*args: str, input: str | bytes | None = None) -> Result:
        return CliRunner().invoke(main, ["--config", str(config), *args], input=input)

    return invoke


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def fails(result: Result, error: str) -> None:
    assert (result.exit_code, result.output.splitlines()[-1]) == (1, f"Error: {error}")


# --- which database -------------------------------------------------------------------------


def test_without_a_settings_file_every_command_says_which_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAILCIRCLE_CONFIG", raising=False)
    runner = CliRunner()
    # A command that only reads does not create a database out of nothing.
    status = runner.invoke(main, ["status"])
    assert status.exit_code == 1
    assert status.stderr.splitlines() == [
        "Using ./mailcircle.db (no settings file; see --config)",
        "Error: there is no database at ./mailcircle.db (no settings file; see --config); "
        "this command only reads, so it does not create one",
    ]
    assert not (tmp_path / "mailcircle.db").exists()
    # The same as a process, started as `python -m mailcircle`.
    env = {k: v for k, v in os.environ.items() if k != "MAILCIRCLE_CONFIG"}
    listing = subprocess.run(
        [sys.executable, "-m", "mailcircle", "inbox", "list"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == 1 and "there is no database at ./mailcircle.db" in listing.stderr
    assert not (tmp_path / "mailcircle.db").exists()
    # A command that changes something creates it, and says where.
    created = runner.invoke(main, ["circle", "create", "poets@example.org", "--name", "Poets"])
    assert created.exit_code == 0
    assert created.stderr == "Using ./mailcircle.db (no settings file; see --config)\n"
    assert created.stdout == "Created circle Poets at poets@example.org.\n"
    assert (tmp_path / "mailcircle.db").exists()
    assert runner.invoke(main, ["status"]).exit_code == 0


def test_with_a_settings_file_nothing_extra_is_said(run, config: Path) -> None:
    created = run("circle", "create", "poets@example.org", "--name", "Poets")
    assert created.exit_code == 0 and created.stderr == ""


# --- status ---------------------------------------------------------------------------------


def queue_mail(db, to: str, *, created: datetime, status: str = "queued") -> int:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "poets@example.org", to, "hello"
    msg["Message-ID"] = f"<{time.monotonic_ns()}@example.org>"
    msg.set_content("hello\n")
    with transaction(db):
        mail_id = outbox.queue(
            db, msg, now=created, circle_id=1, purpose="ack", mail_from="poets+bounce@example.org"
        )
        db.execute("UPDATE outbox SET status = ? WHERE id = ?", [status, mail_id])
    return mail_id


def test_status_shows_each_circle_and_exits_1_when_a_person_is_needed(
    run,
    tmp_path: Path,
) -> None:
    ok(run("circle", "create", "poets@example.org", "--name", "Poets"))
    ok(run("members", "add", "poets@example.org", "ann@example.net"))
    ok(run("members", "add", "poets@example.org", "ben@example.net"))
    ok(run("members", "remove", "poets@example.org", "ben@example.net"))
    healthy = run("status")
    assert healthy.exit_code == 0, healthy.output
    lines = healthy.stdout.splitlines()
    assert lines[0] == "Poets <poets@example.org>"
    assert "  members:       1 active, 1 left" in lines
    assert "  drafts queued: 0" in lines
    assert "  last round:    none yet" in lines
    assert "  inbound mail:  0 waiting, 0 held, 0 failed" in lines
    assert "  outgoing mail: 0 queued, 0 failed" in lines
    assert lines[-1] == "Nothing needs a person."
    assert any(line.startswith("  next round:    20") for line in lines)

    db = database.connect(tmp_path / "circle.db")
    clock = FakeClock()
    ids = [
        spool.store(
            db,
            clock,
            source="smtp",
            peer="",
            mail_from="ann@example.net",
            recipients=[("poets@example.org", 1)],
            raw=draft(message_id=f"<m{n}@example.net>"),
        )[0]
        for n in range(3)
    ]
    db.execute("UPDATE spool SET status = 'held' WHERE id = ?", [ids[0]])
    db.execute("UPDATE spool SET status = 'failed' WHERE id = ?", [ids[1]])
    now = datetime.now(UTC)
    queue_mail(db, "ann@example.net", created=now - timedelta(hours=3))
    queue_mail(db, "ann@example.net", created=now)
    queue_mail(db, "ann@example.net", created=now, status="failed")

    trouble = run("status")
    assert trouble.exit_code == 1
    lines = trouble.stdout.splitlines()
    assert "  inbound mail:  1 waiting, 1 held, 1 failed" in lines
    assert "  outgoing mail: 2 queued, oldest waiting 3 h, 1 failed" in lines
    assert lines[lines.index("Needs a person:") :] == [
        "Needs a person:",
        "  poets@example.org: 1 inbound mails held for a moderator "
        "(mailcircle inbox list --status held)",
        "  poets@example.org: 1 inbound mails failed (mailcircle inbox list --status failed)",
        "  poets@example.org: outgoing mail has waited 3 h to be sent "
        "(mailcircle outbox list --status queued)",
        "  poets@example.org: 1 outgoing mails failed for good "
        "(mailcircle outbox list --status failed)",
    ]
    # A longer limit: the waiting mail is no longer a problem, the rest still is.
    patient = run("status", "--stuck-after", "240")
    assert patient.exit_code == 1 and "has waited" not in patient.stdout

    figures = run("status", "--json")
    assert figures.exit_code == 1
    data = json.loads(figures.stdout)
    assert data["ok"] is False and len(data["problems"]) == 4
    [poets] = data["circles"]
    assert poets["members"] == {"active": 1, "left": 1}
    assert poets["inbound"] == {"new": 1, "held": 1, "failed": 1}
    assert (poets["outgoing_queued"], poets["outgoing_failed"]) == (2, 1)
    assert 3 * 3600 <= poets["oldest_queued_age_seconds"] < 4 * 3600

    # A circle whose round start has passed without a round: the round is due now.
    db.execute("UPDATE circles SET created_at = '2020-01-01T00:00:00+00:00'")
    assert data["circles"][0]["next_round"] != "due now"
    assert "  next round:    due now" in run("status").stdout.splitlines()

    db.execute("UPDATE spool SET status = 'done' WHERE status IN ('held', 'failed')")
    db.execute("UPDATE outbox SET status = 'sent'")
    assert json.loads(ok(run("status", "--json")))["ok"] is True


# --- inbox inject, then a real serve --------------------------------------------------------


def test_inject_puts_a_mail_in_the_spool_and_serve_answers_it(
    serve: Serve, relay: CapturingRelay, smtp_port: int, tmp_path: Path
) -> None:
    eml = tmp_path / "draft.eml"
    eml.write_bytes(draft(subject="Injected", message_id="<inject-1@example.net>"))
    runner = CliRunner()

    def cli(*args: str, input: bytes | None = None) -> Result:
        return runner.invoke(main, ["--config", str(serve.config), *args], input=input)

    fails(
        cli("inbox", "inject", str(eml), "--to", "stranger@example.org"),
        "stranger@example.org is not a circle's address (see `mailcircle circle list`)",
    )
    done = cli("inbox", "inject", str(eml), "--to", "poets@example.org")
    assert done.exit_code == 0, done.output
    assert done.stdout == (
        "Inbound #1 is in the spool for poets@example.org; "
        "a running `mailcircle serve` or `poll` processes it.\n"
    )
    serve.start(smtp_port)
    [ack] = relay.wait_for(1)
    assert ack.rcpt_tos == ["ann@example.net"]
    assert ack.message["Subject"] == "Queued for the next round: Injected"

    # From stdin, with the envelope sender given: Ben's draft, as Ben.
    second = draft(sender="Ben <ben@example.net>", subject="Piped", message_id="<pipe@x>")
    piped = cli(
        "inbox",
        "inject",
        "-",
        "--to",
        "poets@example.org",
        "--from",
        "ben@example.net",
        input=second,
    )
    assert piped.exit_code == 0, piped.output
    mails = relay.wait_for(2)
    assert mails[1].message["Subject"] == "Queued for the next round: Piped"
    db = database.connect(tmp_path / "circle.db")
    rows = db.execute("SELECT source, mail_from, rcpt_to FROM spool ORDER BY id").fetchall()
    assert rows == [
        ("inject", "ann@example.net", "poets@example.org"),
        ("inject", "ben@example.net", "poets@example.org"),
    ]


def test_inject_refuses_what_it_cannot_use(run, tmp_path: Path) -> None:
    ok(run("circle", "create", "poets@example.org", "--name", "Poets"))
    empty = tmp_path / "empty.eml"
    empty.write_bytes(b"\n")
    fails(run("inbox", "inject", str(empty), "--to", "poets@example.org"), f"{empty} is empty")
    anonymous = tmp_path / "anonymous.eml"
    anonymous.write_bytes(b"Subject: who?\n\nhello\n")
    fails(
        run("inbox", "inject", str(anonymous), "--to", "poets@example.org"),
        f"{anonymous} has no From: address; give --from",
    )


# --- members import ---------------------------------------------------------------------------


def test_import_checks_every_row_first_and_changes_nothing_when_one_is_bad(
    run,
    tmp_path: Path,
) -> None:
    ok(run("circle", "create", "poets@example.org", "--name", "Poets"))
    ok(run("members", "add", "poets@example.org", "ann@example.net", "--name", "Ann"))
    csv = tmp_path / "members.csv"
    csv.write_text(
        "name,email,timezone\n"
        "Ben,ben@example.net,Europe/Paris\n"
        "Bad,not-an-address,UTC\n"
        "Cid,cid@example.net,Mars/Olympus\n"
        "Ann again,Ann@Example.net,UTC\n"
        "Ben twice,BEN@example.net,\n"
        "\n"
        '"Dee\x1b[31m\nDoe",dee@example.net,Asia/Tokyo\n'
    )
    bad = run("members", "import", "poets@example.org", str(csv))
    assert bad.exit_code == 1
    assert bad.stderr.splitlines() == [
        "bad row: line 3: 'not-an-address' is not an email address",
        "bad row: line 4: 'Mars/Olympus' is not a time zone (try Europe/Paris or UTC)",
        "bad row: line 6: ben@example.net is already on line 2",
        "Error: 3 bad rows; nothing was imported (fix them, or give --skip-bad to import "
        "the good rows)",
    ]
    assert [m.split()[0] for m in ok(run("members", "list", "poets@example.org")).splitlines()][
        1:
    ] == ["ann@example.net"]

    skipped = run("members", "import", "poets@example.org", str(csv), "--skip-bad")
    assert skipped.exit_code == 0, skipped.output
    assert skipped.stdout == (
        "Imported 2 members into Poets; 1 were already members; 3 bad rows skipped.\n"
    )
    assert "skipped: line 5: ann@example.net is already a member; left as it is" in (skipped.stderr)
    db = database.connect(tmp_path / "circle.db")
    assert db.execute("SELECT email, name, timezone FROM members ORDER BY id").fetchall() == [
        ("ann@example.net", "Ann", "UTC"),
        ("ben@example.net", "Ben", "Europe/Paris"),
        ("dee@example.net", "Dee[31m Doe", "Asia/Tokyo"),
    ]
    # Run again: everyone is there already, nobody is added twice.
    again = run("members", "import", "poets@example.org", str(csv), "--skip-bad")
    assert again.stdout.startswith("Imported 0 members into Poets; 3 were already members")
    assert db.execute("SELECT COUNT(*) FROM members").fetchone()[0] == 3


def test_import_of_a_long_file_shows_progress(run, tmp_path: Path) -> None:
    ok(run("circle", "create", "poets@example.org", "--name", "Poets"))
    csv = tmp_path / "many.csv"
    rows = [f"Writer {n},writer{n}@example.net,UTC" for n in range(1200)]
    csv.write_text("email,name,timezone\n".replace("email,name", "name,email") + "\n".join(rows))
    result = run("members", "import", "poets@example.org", str(csv))
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "  500 of 1200 rows done...",
        "  1000 of 1200 rows done...",
    ]
    assert result.stdout == "Imported 1200 members into Poets; 0 were already members.\n"


def test_import_needs_a_header_row(run, tmp_path: Path) -> None:
    ok(run("circle", "create", "poets@example.org", "--name", "Poets"))
    csv = tmp_path / "nohead.csv"
    csv.write_text("Ann,ann@example.net,UTC\n")
    fails(
        run("members", "import", "poets@example.org", str(csv)),
        "line 1 must be a header row naming the columns name, email and timezone, "
        "not 'ann,ann@example.net,utc'",
    )


# --- members set --------------------------------------------------------------------------------


def test_members_set_changes_name_time_zone_and_role(run, tmp_path: Path) -> None:
    ok(run("circle", "create", "poets@example.org", "--name", "Poets"))
    ok(run("members", "add", "poets@example.org", "ann@example.net"))
    changed = run(
        "members",
        "set",
        "poets@example.org",
        "Ann@example.net",
        "--name",
        "Ann\r\nBcc: x@evil.example",
        "--timezone",
        "Europe/Paris",
        "--moderator",
    )
    assert ok(changed) == (
        "ann@example.net in Poets: name 'Ann Bcc: x@evil.example', time zone Europe/Paris, "
        "role moderator.\n"
    )
    assert ok(run("members", "set", "poets@example.org", "ann@example.net", "--member")).endswith(
        "role member.\n"
    )
    fails(
        run("members", "set", "poets@example.org", "ann@example.net", "--timezone", "Mars/X"),
        "'Mars/X' is not a time zone (try Europe/Paris or UTC)",
    )
    fails(
        run("members", "set", "poets@example.org", "ann@example.net"),
        "nothing to change: give --name, --timezone, --moderator or --member",
    )
    fails(
        run("members", "set", "poets@example.org", "zed@example.net", "--name", "Zed"),
        "zed@example.net is not a member of poets@example.org",
    )
    db = database.connect(tmp_path / "circle.db")
    assert db.execute("SELECT timezone, role FROM members").fetchall() == [
        ("Europe/Paris", "member")
    ]


# --- a circle with history: export and erase -------------------------------------------------


def critique_reply(row: dict, sender: str, body: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = f"poets+c-{row['token']}@example.org"
    msg["Subject"] = "Re: Please critique"
    msg["Message-ID"] = f"<reply-{row['id']}@example.net>"
    msg.set_content(body)
    return msg.as_bytes()


@pytest.fixture
def history(db, db_path: Path, clock: FakeClock, poets, config: Path):
    """Ann's draft went out to Ben and Cid; Ben's critique reached Ann; Cid's is open."""
    assert db_path == config.parent / "circle.db"
    members.add(db, clock, poets, "cid@example.net", "Cid")
    worker = Worker(db, clock, Composer(clock))

    def deliver(raw: bytes, to: str, mail_from: str) -> str:
        [spool_id] = spool.store(
            db, clock, source="smtp", peer="", mail_from=mail_from, recipients=[(to, 1)], raw=raw
        )
        return worker.process(spool.get(db, spool_id))

    poem = draft(body="so much depends\nupon\n\nthe secret poem\n")
    assert deliver(poem, "poets@example.org", "ann@example.net") == "done"
    with transaction(db):
        assignments.start_round(db, clock, Composer(clock), poets, clock.now())
    ben_row, cid_row = db.query(
        "SELECT a.*, m.email FROM assignments a JOIN members m ON m.id = a.reviewer_id"
        " ORDER BY m.email"
    )
    assert (ben_row["email"], cid_row["email"]) == ("ben@example.net", "cid@example.net")
    words = "The wheelbarrow is glazed with Ben's own words."
    reply = critique_reply(ben_row, "ben@example.net", words)
    to = f"poets+c-{ben_row['token']}@example.org"
    assert deliver(reply, to, "ben@example.net") == "done"
    return {"ben": ben_row, "cid": cid_row, "words": words}


def test_export_gives_everything_stored_about_one_person(run, history) -> None:
    data = json.loads(ok(run("members", "export", "poets@example.org", "ann@example.net")))
    assert data["email"] == "ann@example.net" and data["circle"] == "poets@example.org"
    assert [m["name"] for m in data["member"]] == ["Ann"]
    [poem] = data["drafts"]
    assert "the secret poem" in poem["body"]
    [received] = data["critiques_received"]
    assert received["body"] == history["words"]
    assert data["critiques_given"] == [] and data["assignments"] == []
    [inbound] = data["inbound_mail"]
    assert inbound["mail_from"] == "ann@example.net" and "raw" not in inbound
    assert {m["purpose"] for m in data["outgoing_mail"]} == {"submission_ack", "critique_delivery"}

    raw = json.loads(ok(run("members", "export", "poets@example.org", "ann@example.net", "--raw")))
    assert "the secret poem" in raw["inbound_mail"][0]["raw"]
    [delivery] = [m for m in raw["outgoing_mail"] if m["purpose"] == "critique_delivery"]
    assert "glazed with Ben's own words" in delivery["raw"]

    ben = json.loads(ok(run("members", "export", "poets@example.org", "ben@example.net")))
    [given] = ben["critiques_given"]
    assert given["body"] == history["words"] and given["title"] == "The Red Wheelbarrow"
    assert [a["status"] for a in ben["assignments"]] == ["done"]
    assert {m["purpose"] for m in ben["outgoing_mail"]} == {"assignment", "critique_receipt"}
    fails(
        run("members", "export", "poets@example.org", "zed@example.net"),
        "zed@example.net is not a member of poets@example.org",
    )


def test_erasing_an_author_blanks_their_words_and_keeps_the_database_whole(
    run,
    db,
    history,
) -> None:
    asked = run("members", "erase", "poets@example.org", "ann@example.net", input="n\n")
    fails(asked, "nothing was changed (answer y, or give --yes)")
    assert db.execute("SELECT COUNT(*) FROM members WHERE email = 'ann@example.net'").fetchone()

    erased = run("members", "erase", "poets@example.org", "ann@example.net", input="y\n")
    assert erased.exit_code == 0, erased.output
    assert erased.stdout.splitlines() == [
        "Erased ann@example.net from Poets:",
        "  assignment mails with their drafts deleted or blanked: 2",
        "  open assignments on their drafts withdrawn: 1",
        "  drafts, text erased: 1",
        "  inbound mails blanked: 1",
        "  outgoing mails deleted: 2",
        "  sender records deleted: 1",
        "  member record anonymised: 1",
    ]
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    dump = "\n".join(str(row) for row in db.execute("SELECT * FROM members").fetchall())
    assert "ann@example.net" not in dump and "Ann" not in dump
    for table in ("spool", "submissions", "outbox", "critiques"):
        for row in db.execute(f"SELECT * FROM {table}").fetchall():
            text = " ".join(
                v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in row
            )
            assert "the secret poem" not in text, (table, text)
            assert "ann@example.net" not in text, (table, text)
    # Ben's critique stays his (counted for him), but no token leads to Ann any more.
    assert db.execute("SELECT body, token FROM critiques").fetchall() == [(history["words"], None)]
    assert (
        db.execute(
            "SELECT COUNT(*) FROM assignments WHERE token = ?", [history["ben"]["token"]]
        ).fetchone()[0]
        == 0
    )
    # Cid's open assignment was withdrawn: it does not count against him.
    assert (
        db.execute(
            "SELECT COUNT(*) FROM assignments WHERE reviewer_id = ?",
            [history["cid"]["reviewer_id"]],
        ).fetchone()[0]
        == 0
    )
    assert db.execute("SELECT status FROM submissions").fetchall() == [("withdrawn",)]
    fails(
        run("members", "export", "poets@example.org", "ann@example.net"),
        "ann@example.net is not a member of poets@example.org",
    )
    # She may join again later, as a new member with no history.
    ok(run("members", "add", "poets@example.org", "ann@example.net"))


def test_erasing_a_reviewer_erases_their_critiques_and_passes_on_open_work(
    run,
    db,
    history,
) -> None:
    erased = ok(run("members", "erase", "poets@example.org", "ben@example.net", "--yes"))
    assert "  critiques given, text erased: 1" in erased.splitlines()
    assert db.execute("SELECT body, trimmed, token FROM critiques").fetchall() == [
        ("(erased)", "", None)
    ]
    cid = ok(run("members", "erase", "poets@example.org", "cid@example.net", "--yes"))
    assert "  assignments passed to backups: 1" in cid.splitlines()
    assert db.execute(
        "SELECT status FROM assignments WHERE id = ?", [history["cid"]["id"]]
    ).fetchall() == [("passed_on",)]
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    # Ann's draft and the critique she received (Ben's, now erased) are still hers.
    assert "the secret poem" in db.execute("SELECT body FROM submissions").fetchone()[0]


# --- circle remove ----------------------------------------------------------------------------


def test_circle_remove_refuses_open_work_unless_forced(run, db, history) -> None:
    fails(
        run("circle", "remove", "poets@example.org", "--yes"),
        "poets@example.org still has work under way (1 open assignments, 5 outgoing mails "
        "not sent yet); use --force to remove it anyway",
    )
    fails(
        run("circle", "remove", "poets@example.org", "--force", input="n\n"),
        "nothing was changed (answer y, or give --yes)",
    )
    removed = run("circle", "remove", "poets@example.org", "--force", input="y\n")
    assert removed.exit_code == 0, removed.output
    lines = removed.stdout.splitlines()
    assert lines[0] == "Removed Poets <poets@example.org>."
    assert "  members: 3 rows deleted" in lines and "  critiques: 1 rows deleted" in lines
    for table in ("circles", "members", "spool", "submissions", "assignments", "outbox"):
        assert db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0, table
    fails(
        run("circle", "remove", "poets@example.org", "--yes"),
        "no circle at poets@example.org (see `mailcircle circle list`)",
    )


# --- run-due --now: decided then, sent now ---------------------------------------------------


def test_run_due_in_the_future_queues_mail_that_serve_sends_at_once(
    serve: Serve, relay: CapturingRelay, smtp_port: int, tmp_path: Path
) -> None:
    serve.start(smtp_port)
    with smtplib.SMTP("127.0.0.1", smtp_port) as client:
        client.sendmail("ann@example.net", ["poets@example.org"], draft())
    relay.wait_for(1)  # the acknowledgement
    now = datetime.now(UTC)
    monday = (now + timedelta(days=7 - now.weekday() + 7)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    output = serve.cli("run-due", "--now", monday.isoformat())
    assert "poets@example.org: round 1 sent 1 assignments for 1 drafts" in output
    mails = relay.wait_for(2)
    [assignment] = [m for m in mails if m.message["Subject"].startswith("Please critique")]
    assert assignment.rcpt_tos == ["ben@example.net"]
    # Dated now, not on that Monday; due a week and a half later all the same.
    assert parsedate_to_datetime(assignment.message["Date"]) <= datetime.now(UTC)
    db = database.connect(tmp_path / "circle.db")
    [(due_at,)] = db.execute("SELECT due_at FROM assignments").fetchall()
    assert datetime.fromisoformat(due_at) > monday


# --- logging ------------------------------------------------------------------------------------


def serve_and_send(tmp_path: Path, relay: CapturingRelay, *options: str) -> str:
    """Start `serve` with the given options, send it one draft, stop it; its stderr."""
    port = free_port()
    tmp_path = tmp_path / f"run-{time.monotonic_ns()}"
    tmp_path.mkdir()
    config = write_settings(tmp_path / "log.toml", smtp_port=port, relay_port=relay.port)
    CliRunner().invoke(
        main, ["--config", str(config), "circle", "create", "poets@example.org", "--name", "P"]
    )
    log = tmp_path / f"serve-{time.monotonic_ns()}.err"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailcircle", "--config", str(config), *options],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    try:
        wait_for_port(port, proc=proc)
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.sendmail("ann@example.net", ["poets@example.org"], draft())
        relay.wait_for(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    relay.mails.clear()
    return log.read_text()


def test_debug_logging_shows_mailcircle_not_the_libraries_unless_asked(
    tmp_path: Path, relay: CapturingRelay
) -> None:
    # The top-level options, and serve's own --log-level as before.
    lines = serve_and_send(tmp_path, relay, "--log-format", "json", "serve", "--log-level", "debug")
    entries = [json.loads(line) for line in lines.splitlines()]
    loggers = {e["logger"] for e in entries}
    assert any(e["level"] == "debug" and e["logger"].startswith("mailcircle.") for e in entries)
    assert "mailcircle.inbound.process" in loggers
    assert not [name for name in loggers if not name.startswith("mailcircle")], loggers

    noisy = serve_and_send(tmp_path, relay, "--log-level", "debug", "--debug-libraries", "serve")
    assert " mail.log: " in noisy  # aiosmtpd's protocol log
    assert " DEBUG mailcircle." in noisy


def test_one_shot_commands_log_warnings_only_by_default(run) -> None:
    ok(run("circle", "create", "poets@example.org", "--name", "Poets"))
    quiet = run("run-due", "--now", "2026-03-09T09:00:00+00:00")
    assert quiet.stderr == ""
    chatty = run("--log-level", "info", "run-due", "--now", "2030-03-11T09:00:00+00:00")
    assert "INFO mailcircle.scheduler: poets@example.org: round 1" in chatty.stderr


# --- IMAP over TLS: imap.ca_file, and errors as one sentence --------------------------------


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate it signed for 127.0.0.1: (ca, cert, key)."""
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, csr = folder / "server.pem", folder / "server.key", folder / "server.csr"
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for args in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
         "-days", "2", "-subj", "/CN=mailcircle test CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
         "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", ext],
    ):  # fmt: skip
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
    for path in (cert, key):
        path.chmod(0o644)
    return ca, cert, key


@pytest.fixture
def tls_dovecot(tmp_path: Path):
    from dovecot import Dovecot

    server = Dovecot()
    ca, cert, key = make_certificates(server.root)
    server.config.write_text(
        server.config.read_text().replace(
            "ssl = no", f"ssl = required\nssl_cert = <{cert}\nssl_key = <{key}"
        )
    )
    server.start()
    yield server, ca
    server.cleanup()


def imap_settings(tmp_path: Path, port: int, security: str, extra: str = "") -> Path:
    from dovecot import PASSWORD, USER

    path = tmp_path / "imap.toml"
    path.write_text(
        f'database = "circle.db"\n[inbound]\nsmtp = ""\n[imap]\nhost = "127.0.0.1"\n'
        f'port = {port}\nsecurity = "{security}"\nuser = "{USER}"\n'
        f'password_command = "echo {PASSWORD}"\n{extra}'
    )
    return path


def poll_once(settings: Path) -> Result:
    return CliRunner().invoke(main, ["--config", str(settings), "poll", "--once"])


def test_imap_starttls_is_verified_against_imap_ca_file(tls_dovecot, tmp_path: Path) -> None:
    server, ca = tls_dovecot
    untrusted = poll_once(imap_settings(tmp_path, server.port, "starttls"))
    fails(
        untrusted,
        f"IMAP 127.0.0.1:{server.port}: the server's TLS certificate could not be verified "
        "(unable to get local issuer certificate); if your own CA signed it, give that CA's "
        "certificate in imap.ca_file",
    )
    assert "Traceback" not in untrusted.output
    trusted = poll_once(imap_settings(tmp_path, server.port, "starttls", f'ca_file = "{ca}"'))
    assert trusted.exit_code == 0, trusted.output
    assert "Mailbox: 0 looked at" in trusted.output
    # Relative to the settings file's folder, like every path in it.
    (tmp_path / "ca.pem").write_bytes(ca.read_bytes())
    relative = poll_once(imap_settings(tmp_path, server.port, "starttls", 'ca_file = "ca.pem"'))
    assert relative.exit_code == 0, relative.output
    fails(
        poll_once(imap_settings(tmp_path, server.port, "starttls", 'ca_file = "none.pem"')),
        f"imap.ca_file names {tmp_path / 'none.pem'}, which does not exist",
    )


def test_imap_connection_trouble_is_one_sentence(tls_dovecot, tmp_path: Path) -> None:
    server, ca = tls_dovecot
    # TLS spoken to a port that expects plain IMAP first.
    fails(
        poll_once(imap_settings(tmp_path, server.port, "tls", f'ca_file = "{ca}"')),
        f"IMAP 127.0.0.1:{server.port}: the TLS handshake failed (wrong version number); "
        "check imap.security and imap.port (993 is for tls, 143 for starttls)",
    )
    closed = free_port()
    fails(
        poll_once(imap_settings(tmp_path, closed, "none")),
        f"IMAP 127.0.0.1:{closed}: the connection was refused "
        "(is the IMAP server running, on that port?)",
    )


def test_imap_trouble_while_watching_is_logged_as_one_sentence(
    tls_dovecot,
    tmp_path: Path,
) -> None:
    server, _ = tls_dovecot
    settings = imap_settings(tmp_path, server.port, "starttls")
    log = tmp_path / "poll.err"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailcircle", "--config", str(settings), "poll"],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 20
        while "could not be verified" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    [line] = [line for line in log.read_text().splitlines() if "could not be verified" in line]
    assert line.endswith(
        f"WARNING mailcircle.inbound.imap: IMAP 127.0.0.1:{server.port}: the server's TLS "
        "certificate could not be verified (unable to get local issuer certificate); if your "
        "own CA signed it, give that CA's certificate in imap.ca_file; trying again in 1 s"
    )
    assert "Traceback" not in log.read_text()


# --- tests that need material from outside the repository -----------------------------------


def run_pytest(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).parents[1]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MAILCIRCLE_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=root,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_clone_without_the_corpora_skips_saying_why_and_ci_fails(tmp_path: Path) -> None:
    tests = ["tests/test_reply.py", "-k", "golden_corpus_is_there or golden_case"]
    clone = run_pytest(*tests, MAILCIRCLE_SHARED=str(tmp_path))
    assert clone.returncode == 0, clone.stdout
    assert "2 skipped" in clone.stdout
    assert f"the golden reply-trimming corpus not found under {tmp_path}" in clone.stdout

    ci = run_pytest(*tests, MAILCIRCLE_SHARED=str(tmp_path), MAILCIRCLE_REQUIRE_CORPORA="1")
    assert ci.returncode == 1, ci.stdout
    assert "1 failed" in ci.stdout and "1 error" in ci.stdout
    assert "MAILCIRCLE_REQUIRE_CORPORA is set, so this fails" in ci.stdout
    # An empty corpus folder is no better than none: the test is not run zero times.
    (tmp_path / "corpora" / "email_reply_trimmer" / "emails").mkdir(parents=True)
    empty = run_pytest(*tests, MAILCIRCLE_SHARED=str(tmp_path), MAILCIRCLE_REQUIRE_CORPORA="1")
    assert empty.returncode == 1 and "test_golden_case[corpus-missing]" in empty.stdout


def test_ci_requires_the_corpora() -> None:
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text().splitlines()
    # Under CI=true (shared/ beside the clone) a missing corpus fails; a lone clone skips.
    guard = 'if [ "${CI:-}" = "true" ]; then export MAILCIRCLE_REQUIRE_CORPORA=1; fi'
    assert guard in ci
    assert ci.index(guard) < next(n for n, line in enumerate(ci) if ".venv/bin/pytest" in line)


def test_export_and_erase_cover_talk_posts(run, db, clock, history) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ann@example.net", "poets+talk@example.org", "Readings"
    msg["Message-ID"] = "<talk-1@example.net>"
    msg.set_content("A private thought about readings.\n")
    [spool_id] = spool.store(
        db,
        clock,
        source="smtp",
        peer="",
        mail_from="ann@example.net",
        recipients=[("poets+talk@example.org", 1)],
        raw=msg.as_bytes(),
    )
    assert Worker(db, clock, Composer(clock)).process(spool.get(db, spool_id)) == "done"
    copies = db.execute("SELECT COUNT(*) FROM outbox WHERE purpose = 'talk_post'").fetchone()[0]
    assert copies == 2  # Ben and Cid
    data = json.loads(ok(run("members", "export", "poets@example.org", "ann@example.net")))
    [post] = data["talk_posts"]
    assert (post["subject"], post["body"].strip()) == (
        "Readings",
        "A private thought about readings.",
    )
    erased = ok(run("members", "erase", "poets@example.org", "ann@example.net", "--yes"))
    assert "  talk posts, text erased: 1" in erased.splitlines()
    assert "  talk copies of their posts deleted or blanked: 2" in erased.splitlines()
    assert db.execute("SELECT subject, body FROM talk_posts").fetchall() == [("(erased)", "")]
    for (raw,) in db.execute("SELECT raw FROM outbox").fetchall():
        assert b"private thought" not in raw
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
