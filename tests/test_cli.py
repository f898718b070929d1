"""The moderator's command line, through click's runner, asserting the exact text printed."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from conftest import draft

from mailcircle import db as database
from mailcircle.cli import main
from mailcircle.clock import FakeClock
from mailcircle.inbound import spool


@pytest.fixture
def run(tmp_path: Path):
    config = tmp_path / "mailcircle.toml"
    config.write_text('database = "circle.db"\n')

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, ["--config", str(config), *args])

    return invoke


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def test_circles_and_members_round_trip(run, tmp_path: Path) -> None:
    # A command that only reads does not create the database it was pointed at.
    missing = run("circle", "list")
    assert (missing.exit_code, missing.output) == (
        1,
        f"Error: there is no database at {tmp_path / 'circle.db'}; "
        "this command only reads, so it does not create one\n",
    )
    assert not (tmp_path / "circle.db").exists()
    ok(run("circle", "create", "novelists@example.org", "--name", "Novelists"))
    ok(run("circle", "remove", "novelists@example.org", "--yes"))
    assert ok(run("circle", "list")) == (
        "No circles yet. Create one: mailcircle circle create ADDRESS --name NAME\n"
    )
    assert ok(run("circle", "create", "Poets@Example.org", "--name", "Poets")) == (
        "Created circle Poets at poets@example.org.\n"
    )
    assert ok(run("members", "add", "poets@example.org", "Ann@Example.net", "--name", "Ann")) == (
        "Added ann@example.net to Poets.\n"
    )
    ok(run("members", "add", "poets@example.org", "ben@example.net"))
    assert ok(run("members", "list", "poets@example.org")).splitlines() == [
        "EMAIL            NAME  STATUS  ROLE",
        "ann@example.net  Ann   active  member",
        "ben@example.net        active  member",
    ]
    assert ok(run("circle", "list")).splitlines() == [
        "ADDRESS            NAME   MEMBERS",
        "poets@example.org  Poets  2",
    ]
    assert ok(run("members", "remove", "poets@example.org", "ben@example.net")) == (
        "Removed ben@example.net from Poets.\n"
    )
    assert "ben@" not in ok(run("members", "list", "poets@example.org"))
    # Someone who left can be added again.
    ok(run("members", "add", "poets@example.org", "ben@example.net"))


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ("circle", "create", "poets", "--name", "Poets"),
            "'poets' is not a usable circle address; give one like poets@example.org",
        ),
        (
            ("circle", "create", "poets+x@example.org", "--name", "Poets"),
            "a circle address cannot contain '+': it separates the circle from commands "
            "(poets+help@...)",
        ),
        (
            ("circle", "create", "poets@example.org", "--name", "Poets"),
            "there is already a circle at poets@example.org",
        ),
        (
            ("members", "add", "novelists@example.org", "ann@example.net"),
            "no circle at novelists@example.org (see `mailcircle circle list`)",
        ),
        (
            ("members", "add", "poets@example.org", "not an address"),
            "'not an address' is not an email address",
        ),
        (
            ("members", "add", "poets@example.org", "ann@example.net"),
            "ann@example.net is already a member of poets@example.org",
        ),
        (
            ("members", "remove", "poets@example.org", "zed@example.net"),
            "zed@example.net is not a member of poets@example.org",
        ),
        (("inbox", "show", "42"), "there is no inbound message #42 (see `mailcircle inbox list`)"),
        (("inbox", "retry", "42"), "there is no inbound message #42 (see `mailcircle inbox list`)"),
    ],
)
def test_errors_are_one_line(run, args: tuple[str, ...], error: str) -> None:
    ok(run("circle", "create", "poets@example.org", "--name", "Poets"))
    ok(run("members", "add", "poets@example.org", "ann@example.net"))
    result = run(*args)
    assert result.exit_code == 1
    assert result.output == f"Error: {error}\n"


def test_inbox_list_show_and_retry(run, tmp_path: Path) -> None:
    ok(run("circle", "create", "poets@example.org", "--name", "Poets"))
    db = database.connect(tmp_path / "circle.db")
    [spool_id] = spool.store(
        db,
        FakeClock(),
        source="smtp",
        peer="127.0.0.1:5000",
        mail_from="ann@example.net",
        recipients=[("poets@example.org", 1)],
        raw=draft(),
    )
    listing = ok(run("inbox", "list")).splitlines()
    assert listing[0].split() == ["ID", "RECEIVED", "STATUS", "FROM", "TO", "OUTCOME"]
    assert listing[1].split()[2:5] == ["new", "ann@example.net", "poets@example.org"]
    assert ok(run("inbox", "list", "--status", "failed")) == "No inbound mail with status failed.\n"
    shown = ok(run("inbox", "show", str(spool_id)))
    assert "Message-ID:    <draft-1@example.net>" in shown
    assert "Status:        new" in shown
    assert "Subject: The Red Wheelbarrow" in shown
    raw = run("inbox", "show", str(spool_id), "--raw")
    assert raw.exit_code == 0 and raw.stdout_bytes == draft()

    retry = run("inbox", "retry", str(spool_id))
    assert (
        retry.output == f"Error: inbound message #{spool_id} is already waiting to be processed\n"
    )
    db.execute("UPDATE spool SET status = 'failed', error = 'boom' WHERE id = ?", [spool_id])
    assert ok(run("inbox", "retry", str(spool_id))) == (
        f"Inbound #{spool_id} is queued to be processed again.\n"
    )
    assert spool.get(db, spool_id).status == "new"


def test_outbox_list_when_empty(run) -> None:
    ok(run("circle", "create", "poets@example.org", "--name", "Poets"))
    assert ok(run("outbox", "list")) == "No outgoing mail yet.\n"


def all_commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        full = f"{prefix}{name}"
        found.append((full, command))
        if isinstance(command, click.Group):
            found += all_commands(command, full + " ")
    return found


@pytest.mark.parametrize(("name", "command"), all_commands(main), ids=lambda v: str(v))
def test_every_command_explains_itself(name: str, command: click.Command) -> None:
    result = CliRunner().invoke(main, [*name.split(), "--help"])
    assert result.exit_code == 0
    assert command.help and len(command.help.split()) >= 3, (
        f"`mailcircle {name}` needs a --help text"
    )
    assert f"Usage: main {name}" in result.output


def test_every_command_and_setting_is_documented_in_the_readme() -> None:
    from mailcircle.config import DOCUMENTED_KEYS

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    missing = [name for name, _ in all_commands(main) if f"mailcircle {name}" not in readme]
    assert missing == [], f"README.md does not mention: {missing}"
    keys = [key.rpartition(".")[2] for key in DOCUMENTED_KEYS]
    assert [key for key in keys if f"{key} =" not in readme] == []
    from mailcircle.circle.settings import HELP

    assert [key for key in HELP if f"| `{key}` |" not in readme] == []


def test_circle_settings_are_set_checked_and_shown(run) -> None:
    ok(run("circle", "create", "poets@example.org", "--name", "Poets"))
    assert ok(run("circle", "set", "poets@example.org", "round_day", "Friday")) == (
        "Poets: round_day = friday\n"
    )
    unknown = run("circle", "set", "poets@example.org", "colour", "blue")
    assert unknown.exit_code == 1
    assert unknown.output.startswith("Error: unknown circle setting 'colour' (known: address_sep")
    for args, error in (
        (("max_words", "lots"), "max_words must be a whole number, not 'lots'"),
        (
            ("timezone", "Mars/Olympus"),
            "'Mars/Olympus' is not a time zone (try Europe/Paris or UTC)",
        ),
        (("remind_days", "9"), "remind_days must be fewer than critique_days"),
        (("max_words", "-2"), "max_words must be at least 1, not -2"),  # a value, not an option
    ):
        result = run("circle", "set", "poets@example.org", *args)
        assert (result.exit_code, result.output) == (1, f"Error: {error}\n")
    shown = ok(run("circle", "show", "poets@example.org")).splitlines()
    assert shown[0] == "Poets <poets@example.org>"
    assert any(line.startswith("* round_day") and "friday" in line for line in shown)
    assert any(line.startswith("  reviews_per_draft") and " 3 " in line for line in shown)


def test_run_due_needs_a_moment_with_a_time_zone(run) -> None:
    assert run("run-due", "--now", "next monday").output == (
        "Error: --now must be an ISO date and time, not 'next monday'\n"
    )
    assert run("run-due", "--now", "2026-03-09T09:00:00").output == (
        "Error: --now needs a time zone, e.g. 2026-03-09T09:00:00+00:00\n"
    )
    assert ok(run("run-due", "--now", "2026-03-09T09:00:00+00:00")) == (
        "0 reminders, 0 assignments expired, 0 digests, 0 agendas.\n"
    )


def test_round_preview_shows_who_would_review_whom_and_changes_nothing(
    run,
    tmp_path: Path,
) -> None:
    from mailcircle.circle import circles, submissions

    ok(run("circle", "create", "poets@example.org", "--name", "Poets"))
    for name in ("ann", "ben"):
        ok(run("members", "add", "poets@example.org", f"{name}@example.net"))
    db = database.connect(tmp_path / "circle.db")
    [spool_id] = spool.store(
        db,
        FakeClock(),
        source="smtp",
        peer="",
        mail_from="ann@example.net",
        recipients=[("poets@example.org", 1)],
        raw=draft(),
    )
    circle = circles.get(db, "poets@example.org")
    submissions.create(
        db,
        circle_id=circle.id,
        member_id=1,
        spool_id=spool_id,
        message_id="<p@x>",
        thread=(),
        now=FakeClock().now(),
        draft=submissions.read_draft("Fog", "the fog comes"),
    )
    preview = ok(run("round", "preview", "poets@example.org")).splitlines()
    assert preview[0] == "Round 1 of Poets: 1 drafts queued, 2 members can review."
    assert preview[1].split() == ["DRAFT", "AUTHOR", "REVIEWER"]
    assert preview[2].split() == ["Fog", "ann@example.net", "ben@example.net"]
    assert "short: 'Fog' gets only 1 reviewer(s)" in preview
    assert db.execute("SELECT COUNT(*) FROM rounds").fetchone()[0] == 0
