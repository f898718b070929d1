"""The moderator's command line: `mailcircle --help`."""

from __future__ import annotations

import email
import email.policy
import functools
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import click
from sqlite_utils import Database

from mailcircle import __version__, config, logs
from mailcircle import db as database
from mailcircle.circle import circles, holds, members, operations
from mailcircle.clock import Clock, SystemClock
from mailcircle.db import transaction
from mailcircle.errors import MailcircleError
from mailcircle.inbound import spool
from mailcircle.outbound import outbox

SAMPLE_CIRCLE = "poets@localhost"
SAMPLE_MEMBER = "you@localhost"


class _Group(click.Group):
    """Turns every MailcircleError into click's one-line `Error: ...` and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MailcircleError as err:
            raise click.ClickException(str(err)) from None
        except sqlite3.Error as err:  # a full disk, a locked or damaged database
            raise click.ClickException(_database_fault(err)) from None
        except OSError as err:  # a folder that cannot be written, ...
            where = f" ({err.filename})" if err.filename else ""
            raise click.ClickException(f"{err.strerror or err}{where}") from None


def _database_fault(err: sqlite3.Error) -> str:
    text = str(err)
    if "full" in text:
        return f"the database could not be written: {text}; free some disk space and try again"
    if "locked" in text or "busy" in text:
        return f"the database is busy ({text}); try again in a moment"
    return f"the database could not be used: {text}"


class _State:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._settings: config.Settings | None = None
        self._db: Database | None = None
        self.clock = SystemClock()
        self.log_level: str | None = None  # the top-level --log-level, if given
        self.log_format = "text"
        self.debug_libraries = False

    @property
    def settings(self) -> config.Settings:
        if self._settings is None:
            self._settings = config.load(self.config_path)
        return self._settings

    @property
    def db(self) -> Database:
        if self._db is None:
            path = self.settings.database
            if self.settings.source is None:
                click.echo(f"Using {_shown_path(path)} (no settings file; see --config)", err=True)
            if not path.exists() and _read_only_command():
                raise MailcircleError(
                    f"there is no database at {_shown_path(path)}"
                    + ("" if self.settings.source else " (no settings file; see --config)")
                    + "; this command only reads, so it does not create one"
                )
            self._db = database.connect(path)
        return self._db


pass_state = click.make_pass_decorator(_State)

_LOG_LEVEL = click.option(
    "--log-level",
    type=click.Choice(logs.LEVELS),
    default=None,
    help="How much to log to standard error (default here: info).",
)


def _table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> None:
    rows = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for line in [list(headers), *rows]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar=config.ENV_VAR,
    type=click.Path(dir_okay=False),
    help=f"Settings file (TOML). Default: ${config.ENV_VAR}, else built-in defaults.",
)
@click.option(
    "--log-level",
    type=click.Choice(logs.LEVELS),
    help="How much mailcircle logs to standard error. "
    "Default: info for serve and poll, warning for the other commands.",
)
@click.option(
    "--log-format",
    type=click.Choice(logs.FORMATS),
    default="text",
    show_default=True,
    help="Log lines as text, or one JSON object a line (for a log collector).",
)
@click.option(
    "--debug-libraries",
    is_flag=True,
    help="Let the libraries (aiosmtpd, imapclient, asyncio ...) log at --log-level too; "
    "otherwise they log warnings only.",
)
@click.version_option(__version__, prog_name="mailcircle")
@click.pass_context
def main(
    ctx: click.Context,
    config_path: str | None,
    log_level: str | None,
    log_format: str,
    debug_libraries: bool,
) -> None:
    """mailcircle: a writing circle that runs entirely by email.

    Writers mail drafts to the circle's address; mailcircle stores each one, acknowledges
    it, and each round hands it to fellow members to critique. Start with
    `mailcircle init`, `mailcircle circle create`, `mailcircle members add`, then
    `mailcircle serve`.
    """
    ctx.obj = state = _State(config_path)
    state.log_level, state.log_format, state.debug_libraries = (
        log_level,
        log_format,
        debug_libraries,
    )
    logs.setup(log_level or "warning", log_format, debug_libraries=debug_libraries)


@main.command()
@click.option("--force", is_flag=True, help="Overwrite an existing settings file.")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@pass_state
def init(state: _State, path: str | None, force: bool) -> None:
    """Write a commented settings file (default: ./mailcircle.toml, or --config).

    Every key in it is optional and shown at its default. Point mailcircle at it with
    --config PATH or MAILCIRCLE_CONFIG=PATH.
    """
    target = Path(path or state.config_path or "mailcircle.toml")
    if target.exists() and not force:
        raise MailcircleError(f"{target} already exists; use --force to overwrite it")
    target.write_text(config.sample_file(), encoding="utf-8")
    click.echo(f"Wrote {target}. Edit it, then run: mailcircle --config {target} serve")


# --- circles ------------------------------------------------------------------------------


@main.group(cls=_Group)
def circle() -> None:
    """Create, list, change and remove circles."""


@circle.command("create")
@click.argument("address")
@click.option("--name", required=True, help="The circle's name, shown in every mail (Poets).")
@pass_state
def circle_create(state: _State, address: str, name: str) -> None:
    """Create a circle that takes drafts at ADDRESS (e.g. poets@example.org)."""
    created = circles.create(state.db, state.clock, address, name)
    click.echo(f"Created circle {created.name} at {created.address}.")


@circle.command("list")
@pass_state
def circle_list(state: _State) -> None:
    """List every circle with its member count."""
    counts = dict(
        state.db.execute(
            "SELECT circle_id, COUNT(*) FROM members WHERE status != 'left' GROUP BY circle_id"
        ).fetchall()
    )
    found = circles.all_circles(state.db)
    if not found:
        click.echo("No circles yet. Create one: mailcircle circle create ADDRESS --name NAME")
        return
    _table(
        ((c.address, c.name, counts.get(c.id, 0)) for c in found), ("ADDRESS", "NAME", "MEMBERS")
    )


@circle.command("set")
@click.argument("circle_address", metavar="CIRCLE")
@click.argument("key")
@click.argument("value")
@pass_state
def circle_set(state: _State, circle_address: str, key: str, value: str) -> None:
    """Change one of CIRCLE's settings (see `mailcircle circle show CIRCLE`)."""
    found = circles.set_setting(state.db, circles.get(state.db, circle_address), key, value)
    click.echo(f"{found.name}: {key} = {getattr(found.config, key)}")


@circle.command("show")
@click.argument("circle_address", metavar="CIRCLE")
@pass_state
def circle_show(state: _State, circle_address: str) -> None:
    """Show CIRCLE's settings, each with its meaning; changed ones are marked with *."""
    from mailcircle.circle.settings import HELP

    found = circles.get(state.db, circle_address)
    click.echo(f"{found.name} <{found.address}>")
    _table(
        (
            (("* " if key in found.settings else "  ") + key, getattr(found.config, key), text)
            for key, text in HELP.items()
        ),
        ("SETTING", "VALUE", "MEANING"),
    )
    if found.config.sender_check == "accept":
        click.echo(
            "Warning: sender_check is accept: this circle believes the From: header, so anyone "
            "who knows a member's address can act as them. Use it for a private test circle "
            "only (see SECURITY.md)."
        )


# --- engagement days ----------------------------------------------------------------------


@main.group(cls=_Group, name="engagement")
def engagement_group() -> None:
    """Engagement days: a day the circle sets aside to talk about its writing."""


@engagement_group.command("add")
@click.argument("circle_address", metavar="CIRCLE")
@click.argument("day", metavar="DATE")
@click.option("--topic", required=True, help="What the day is about.")
@pass_state
def engagement_add(state: _State, circle_address: str, day: str, topic: str) -> None:
    """Schedule an engagement day on DATE (YYYY-MM-DD). The digest announces it, members
    answer yes or no, and the day before those who said yes get the agenda."""
    from mailcircle.circle import engagement

    found = circles.get(state.db, circle_address)
    engagement.add(state.db, state.clock, found, day, topic)
    click.echo(f"{found.name}: engagement day on {day}: {topic}")


@engagement_group.command("list")
@click.argument("circle_address", metavar="CIRCLE")
@pass_state
def engagement_list(state: _State, circle_address: str) -> None:
    """List CIRCLE's engagement days with how many said yes."""
    found = circles.get(state.db, circle_address)
    rows = list(
        state.db.query(
            "SELECT e.day, e.topic, (SELECT COUNT(*) FROM engagement_rsvps r WHERE"
            " r.engagement_id = e.id AND r.answer = 'yes') AS yes FROM engagement_days e"
            " WHERE e.circle_id = ? ORDER BY e.day",
            [found.id],
        )
    )
    if not rows:
        click.echo(f"{found.name} has no engagement day yet.")
        return
    _table(((r["day"], r["yes"], r["topic"]) for r in rows), ("DATE", "YES", "TOPIC"))


@engagement_group.command("agenda")
@click.argument("circle_address", metavar="CIRCLE")
@click.argument("day", metavar="DATE")
@click.argument("item", metavar="ITEM")
@pass_state
def engagement_agenda(state: _State, circle_address: str, day: str, item: str) -> None:
    """Put ITEM on the agenda of CIRCLE's engagement day on DATE (YYYY-MM-DD). Those who
    said yes get the agenda in the kick-off mail on the morning of the day (moderators can
    also mail ITEM as the subject to poets+agenda@)."""
    from mailcircle.circle import engagement
    from mailcircle.db import transaction

    found = circles.get(state.db, circle_address)
    with transaction(state.db):
        text = engagement.add_item(
            state.db, state.clock, engagement.find_day(state.db, found, day), item, "cli"
        )
    click.echo(f"{found.name}: on the agenda of {day}: {text}")


# --- templates ----------------------------------------------------------------------------


@main.group(cls=_Group, name="templates")
def templates_group() -> None:
    """See the mails the circle sends, and which a circle has replaced with its own."""


def _template_circle(state: _State, circle_address: str | None) -> circles.Circle:
    if circle_address:
        return circles.get(state.db, circle_address)
    return circles.Circle(id=0, address="poets@example.org", name="Poets", settings={})


@templates_group.command("list")
@click.option("--circle", "circle_address", metavar="CIRCLE", help="Mark this circle's own.")
@pass_state
def templates_list(state: _State, circle_address: str | None) -> None:
    """List every template with what it is for; * marks one the circle replaced."""
    from mailcircle.outbound.compose import CONTEXTS

    circle = _template_circle(state, circle_address)
    own = Path(circle.config.templates_dir) if circle.config.templates_dir else None
    _table(
        (
            (
                ("* " if own and (own / f"{name}.txt").exists() else "  ") + name,
                (kind.__doc__ or "").split(":", 1)[-1].strip(),
            )
            for name, kind in sorted(CONTEXTS.items())
        ),
        ("TEMPLATE", "SENT WHEN"),
    )


@templates_group.command("preview")
@click.argument("name")
@click.option("--circle", "circle_address", metavar="CIRCLE", help="Use this circle's templates.")
@pass_state
def templates_preview(state: _State, name: str, circle_address: str | None) -> None:
    """Print the mail template NAME makes, headers and all, with sample values."""
    from mailcircle.outbound.compose import CONTEXTS, Composer, sample_context

    if name not in CONTEXTS:
        raise MailcircleError(f"there is no template {name!r} (see `mailcircle templates list`)")
    circle = _template_circle(state, circle_address)
    composed = Composer(state.clock).compose(
        circle, name, sample_context(name), to="ann@example.net"
    )
    message = email.message_from_bytes(composed.as_bytes(), policy=email.policy.default)
    for header, value in message.items():
        if header.lower() not in ("content-type", "content-transfer-encoding", "mime-version"):
            click.echo(f"{header}: {value}")
    body = message.get_body(("plain",))
    click.echo("\n" + (body.get_content() if body is not None else "").replace("\r\n", "\n"))


# --- rounds -------------------------------------------------------------------------------


@main.group(cls=_Group, name="round")
def round_group() -> None:
    """Look at the next round before it starts."""


@round_group.command("preview")
@click.argument("circle_address", metavar="CIRCLE")
@pass_state
def round_preview(state: _State, circle_address: str) -> None:
    """Print who would review whom if CIRCLE's next round started now. Changes nothing."""
    from mailcircle.circle.assign import plan_round
    from mailcircle.circle.assignments import round_input

    found = circles.get(state.db, circle_address)
    inputs = round_input(state.db, found)
    plan = plan_round(inputs)
    people = {m.id: m.email for m in members.list_members(state.db, found)}
    titles = {
        row["id"]: (row["title"], row["member_id"])
        for row in state.db.query(
            "SELECT id, title, member_id FROM submissions WHERE circle_id = ?", [found.id]
        )
    }
    click.echo(
        f"Round {inputs.round_number} of {found.name}: {len(inputs.drafts)} drafts queued, "
        f"{len(inputs.reviewers)} members can review."
    )
    if plan.assignments:
        _table(
            (
                (titles[s][0], people.get(titles[s][1], "?"), people.get(r, "?"))
                for s, r in plan.assignments
            ),
            ("DRAFT", "AUTHOR", "REVIEWER"),
        )
    for wait in plan.deferred:
        click.echo(f"waits: {titles[wait.submission_id][0]!r} ({wait.reason.replace('_', ' ')})")
    for submission_id, got in plan.short:
        click.echo(f"short: {titles[submission_id][0]!r} gets only {got} reviewer(s)")


@main.command("run-due")
@click.option(
    "--now",
    "now_text",
    metavar="ISO-DATETIME",
    help="Act as if it were this moment (e.g. 2026-03-09T09:00:00+00:00).",
)
@pass_state
def run_due_command(state: _State, now_text: str | None) -> None:
    """Run everything due once: expiry, reminders, rounds, digests, engagement-day agendas
    and kickoffs, notices of held talk posts. For cron and for tests.

    Every job works out what is due from the database and the time, so running it twice
    does nothing the second time. The mails it queues are sent by `serve` or `poll`; with
    --now in the future they are still dated and sent now, not at that moment.
    """
    from mailcircle.clock import FakeClock
    from mailcircle.outbound.compose import Composer
    from mailcircle.scheduler import run_due

    clock: Clock = state.clock
    if now_text:
        from datetime import datetime

        try:
            moment = datetime.fromisoformat(now_text)
        except ValueError:
            raise MailcircleError(f"--now must be an ISO date and time, not {now_text!r}") from None
        if moment.tzinfo is None:
            raise MailcircleError("--now needs a time zone, e.g. 2026-03-09T09:00:00+00:00")
        clock = FakeClock(moment)
    # What is due is decided at --now; the mail it queues is dated and due now in real time
    # (or at --now, if that is earlier), so a running serve sends it at once.
    real = state.clock
    dated = FakeClock(min(clock.now(), real.now()))
    before = operations.last_outbox_id(state.db)
    report = run_due(state.db, clock, Composer(dated))
    operations.send_now(state.db, before, min(clock.now(), real.now()))
    for line in report.rounds:
        click.echo(line)
    click.echo(
        f"{report.reminders} reminders, {report.expired} assignments expired, "
        f"{report.digests} digests, {report.agendas} agendas."
    )
    if report.errors:
        raise MailcircleError("; ".join(report.errors))


# --- members ------------------------------------------------------------------------------


@main.group(cls=_Group, name="members")
def members_group() -> None:
    """Add, import, list, change, export, erase and remove a circle's members."""


@members_group.command("add")
@click.argument("circle_address", metavar="CIRCLE")
@click.argument("email")
@click.option("--name", default="", help="The member's name, used to greet them.")
@click.option("--moderator", is_flag=True, help="Also send them the circle's moderator notices.")
@pass_state
def members_add(state: _State, circle_address: str, email: str, name: str, moderator: bool) -> None:
    """Make EMAIL a member of CIRCLE (the circle's address)."""
    found = circles.get(state.db, circle_address)
    role = members.MODERATOR if moderator else "member"
    member = members.add(state.db, state.clock, found, email, name, role=role)
    click.echo(f"Added {member.email} to {found.name}" + (" as a moderator." if moderator else "."))


@members_group.command("list")
@click.argument("circle_address", metavar="CIRCLE")
@pass_state
def members_list(state: _State, circle_address: str) -> None:
    """List the members of CIRCLE."""
    found = circles.get(state.db, circle_address)
    rows = members.list_members(state.db, found)
    if not rows:
        click.echo(
            f"{found.name} has no members yet. Add one: mailcircle members add "
            f"{found.address} EMAIL"
        )
        return
    _table(((m.email, m.name, m.status, m.role) for m in rows), ("EMAIL", "NAME", "STATUS", "ROLE"))


@members_group.command("remove")
@click.argument("circle_address", metavar="CIRCLE")
@click.argument("email")
@pass_state
def members_remove(state: _State, circle_address: str, email: str) -> None:
    """Remove EMAIL from CIRCLE. Their drafts and critiques are kept."""
    found = circles.get(state.db, circle_address)
    member = members.remove(state.db, state.clock, found, email)
    click.echo(f"Removed {member.email} from {found.name}.")


def _private_files(command: Callable[..., None]) -> Callable[..., None]:
    """Run a command that works the circle with umask 077: the database, its -wal and -shm
    files and the Maildir are for the service alone (drafts are private)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        previous = os.umask(0o077)
        try:
            command(*args, **kwargs)
        finally:
            os.umask(previous)

    return run


# --- inbox and outbox ---------------------------------------------------------------------


@main.group(cls=_Group)
def inbox() -> None:
    """Inbound mail: what arrived and what became of it."""


@inbox.command("list")
@click.option("--status", type=click.Choice(spool.STATUSES), help="Only mail with this status.")
@click.option("--limit", default=100, show_default=True, help="Show at most this many.")
@pass_state
def inbox_list(state: _State, status: str | None, limit: int) -> None:
    """List inbound mail, newest first, with what became of each."""
    rows = spool.listing(state.db, status, limit)
    if not rows:
        click.echo("No inbound mail" + (f" with status {status}." if status else " yet."))
        return
    _table(
        (
            (
                r["id"],
                r["received_at"],
                r["status"],
                r["mail_from"] or "<>",
                r["rcpt_to"],
                r["outcome"][:70],
            )
            for r in rows
        ),
        ("ID", "RECEIVED", "STATUS", "FROM", "TO", "OUTCOME"),
    )


@inbox.command("show")
@click.argument("spool_id", metavar="ID", type=int)
@click.option("--raw", is_flag=True, help="Print the message exactly as it arrived.")
@pass_state
def inbox_show(state: _State, spool_id: int, raw: bool) -> None:
    """Show one inbound mail: envelope, status, outcome, error and its headers."""
    mail = spool.get(state.db, spool_id)
    if raw:
        sys.stdout.buffer.write(mail.raw)
        return
    for label, value in (
        ("ID", mail.id),
        ("Received", mail.received_at),
        ("Source", f"{mail.source} {mail.peer}"),
        ("Envelope from", mail.mail_from or "<>"),
        ("Envelope to", mail.rcpt_to),
        ("Message-ID", mail.message_id or "(none)"),
        ("Size", f"{mail.size} bytes"),
        ("Status", mail.status),
        ("Outcome", mail.outcome or "(not processed yet)"),
        ("Processed", mail.processed_at or ""),
        ("Attempts", mail.attempts),
    ):
        click.echo(f"{label + ':':15}{value}")
    if mail.error:
        click.echo("\nError:\n" + mail.error.rstrip())
    head = mail.raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    click.echo("\nHeaders:\n" + head.decode("utf-8", "replace").rstrip())


@inbox.command("retry")
@click.argument("spool_id", metavar="ID", type=int)
@pass_state
def inbox_retry(state: _State, spool_id: int) -> None:
    """Process a failed, held or unhandled mail again (the running service picks it up)."""
    mail = spool.retry(state.db, spool_id)
    click.echo(f"Inbound #{mail.id} is queued to be processed again.")


@inbox.command("release")
@click.argument("spool_id", metavar="ID", type=int)
@pass_state
def inbox_release(state: _State, spool_id: int) -> None:
    """Let a held mail act as if its sender had confirmed it (a moderator's decision)."""
    with transaction(state.db):
        holds.release(state.db, state.clock, spool_id, "a moderator (command line)")
    click.echo(f"Inbound #{spool_id} is released; the running service acts on it now.")


@inbox.command("discard")
@click.argument("spool_id", metavar="ID", type=int)
@pass_state
def inbox_discard(state: _State, spool_id: int) -> None:
    """Never act on a held mail (it is kept, marked ignored); its confirmation links close."""
    with transaction(state.db):
        holds.discard(state.db, state.clock, spool_id, "a moderator (command line)")
    click.echo(f"Inbound #{spool_id} is discarded; it will not act.")


# --- drafts ---------------------------------------------------------------------------------


@main.group(cls=_Group, name="drafts")
def drafts_group() -> None:
    """Drafts members sent: list them, or withdraw one from the circle."""


@drafts_group.command("list")
@click.argument("circle_address", metavar="CIRCLE")
@click.option("--status", type=click.Choice(["queued", "assigned", "closed", "withdrawn"]))
@pass_state
def drafts_list(state: _State, circle_address: str, status: str | None) -> None:
    """List CIRCLE's drafts, newest first, with their status."""
    from mailcircle.circle import submissions

    found = circles.get(state.db, circle_address)
    rows = submissions.listing(state.db, found.id, status)
    if not rows:
        click.echo(f"{found.name} has no drafts" + (f" that are {status}." if status else "."))
        return
    _table(
        ((r["id"], r["title"], r["author"], r["word_count"], r["status"]) for r in rows),
        ("ID", "TITLE", "AUTHOR", "WORDS", "STATUS"),
    )


@drafts_group.command("withdraw")
@click.argument("draft_id", metavar="ID", type=int)
@pass_state
def drafts_withdraw(state: _State, draft_id: int) -> None:
    """Take draft ID out of the circle: it never goes (on) to reviewers, and their open
    assignments for it close. For a draft a round cannot send (moderators are told which),
    or one its author wants back."""
    from mailcircle.circle import submissions

    with transaction(state.db):
        draft, closed = submissions.withdraw(state.db, draft_id)
    click.echo(
        f'Draft #{draft_id}, "{draft["title"]}", is withdrawn'
        + (f"; {closed} open assignment(s) on it closed." if closed else ".")
    )


@main.group(cls=_Group, name="outbox")
def outbox_group() -> None:
    """Outgoing mail: queued, sent and failed."""


@outbox_group.command("list")
@click.option("--status", type=click.Choice([outbox.QUEUED, outbox.SENT, outbox.FAILED]))
@click.option("--limit", default=100, show_default=True, help="Show at most this many.")
@pass_state
def outbox_list(state: _State, status: str | None, limit: int) -> None:
    """List outgoing mail, newest first, with delivery attempts and the last error."""
    rows = outbox.listing(state.db, status, limit)
    if not rows:
        click.echo("No outgoing mail" + (f" with status {status}." if status else " yet."))
        return
    _table(
        (
            (
                r["id"],
                r["created_at"],
                r["status"],
                r["attempts"],
                r["purpose"],
                r["rcpt_to"],
                r["last_error"][:60],
            )
            for r in rows
        ),
        ("ID", "CREATED", "STATUS", "TRIES", "PURPOSE", "TO", "LAST ERROR"),
    )


@outbox_group.command("show")
@click.argument("mail_id", metavar="ID", type=int)
@pass_state
def outbox_show(state: _State, mail_id: int) -> None:
    """Show one outgoing mail: envelope, status, attempts, the last error and its headers."""
    row = outbox.details(state.db, mail_id)
    for label, value in (
        ("ID", row["id"]),
        ("Created", row["created_at"]),
        ("Purpose", row["purpose"]),
        ("Envelope from", row["mail_from"] or "<>"),
        ("Envelope to", row["rcpt_to"]),
        ("Status", row["status"]),
        ("Attempts", row["attempts"]),
        ("Next attempt", row["next_attempt_at"] if row["status"] == outbox.QUEUED else ""),
        ("Sent", row["sent_at"] or ""),
    ):
        click.echo(f"{label + ':':15}{value}")
    if row["last_error"]:
        click.echo(f"{'Last error:':15}{row['last_error']}")
    click.echo("\nHeaders:")
    for name, value in row["headers"]:
        click.echo(f"{name}: {value}")


@outbox_group.command("retry")
@click.argument("mail_id", metavar="ID", type=int, required=False)
@click.option("--failed", "all_failed", is_flag=True, help="Every mail that failed for good.")
@pass_state
def outbox_retry(state: _State, mail_id: int | None, all_failed: bool) -> None:
    """Send a failed mail again (or a queued one now); the running service sends it."""
    from mailcircle.db import transaction

    if (mail_id is None) == (not all_failed):
        raise click.UsageError("give one outgoing mail's ID, or --failed")
    with transaction(state.db):
        if all_failed:
            ids = outbox.retry_failed(state.db, state.clock.now())
        else:
            ids = [outbox.retry(state.db, mail_id or 0, state.clock.now()).id]
    if not ids:
        click.echo("No failed outgoing mail.")
        return
    listed = ", ".join(f"#{i}" for i in ids)
    click.echo(f"Outgoing {listed} {'is' if len(ids) == 1 else 'are'} queued to be sent now.")


# --- serve --------------------------------------------------------------------------------


@main.command()
@_LOG_LEVEL
@click.option(
    "--sample/--no-sample",
    default=None,
    help="Create the sample circle if there is no circle yet. "
    "Default: only when no settings file is in use.",
)
@pass_state
@_private_files
def serve(state: _State, log_level: str, sample: bool | None) -> None:
    """Run the circle: SMTP (and LMTP) server, worker and outgoing mail, until stopped.

    Run without a settings file on a database with no circle yet, it creates a sample
    circle, Poets at poets@localhost, with the member you@localhost, and prints how to
    mail it a draft. Stop with Ctrl-C (or SIGTERM): mail being processed is finished first.
    """
    from mailcircle.service import Service  # import late: --help stays quick

    _setup_logging(state, log_level)
    settings = state.settings
    db = state.db
    no_circles = not circles.all_circles(db)
    if sample is None:  # the embedded default gets a sample; a configured install does not
        sample = settings.source is None
    created = _ensure_sample_circle(state) if no_circles and sample else None
    service = Service(settings, clock=state.clock, isolate=True, command="serve")
    try:
        service.start()
    except OSError as err:
        raise MailcircleError(
            f"cannot listen on {settings.inbound.smtp or settings.inbound.lmtp}: {err.strerror}"
            " (is another mailcircle running? change inbound.smtp in the settings)"
        ) from None
    out = settings.outbound
    click.echo(f"mailcircle {__version__} is running. Database: {settings.database}")
    for server in service.servers:
        click.echo(f"  {server.protocol.upper()} on {server.listen}")
    if out.relay:
        click.echo(f"  Outgoing mail through the relay {out.relay}")
    else:
        click.echo(f"  Outgoing mail into the Maildir {out.maildir} (no relay set)")
    if created and settings.inbound.smtp:
        smtp = settings.inbound.smtp
        click.echo(
            f"\nCreated a sample circle, Poets at {SAMPLE_CIRCLE}, with the member {SAMPLE_MEMBER}."
            "\nMail it a draft from another terminal:\n"
            f"  python3 -c \"import smtplib; smtplib.SMTP('{smtp.host}', {smtp.port}).sendmail("
            f"'{SAMPLE_MEMBER}', ['{SAMPLE_CIRCLE}'], b'From: {SAMPLE_MEMBER}\\r\\n"
            f"To: {SAMPLE_CIRCLE}\\r\\nSubject: My first poem\\r\\n\\r\\nso much depends\\r\\n"
            f"upon\\r\\n')\"\n"
            f"and the acknowledgement appears in {out.maildir}/new/.\n"
            "The sample circle believes the From: header (sender_check = accept); a circle "
            "you create checks senders (see SECURITY.md)."
        )
    elif no_circles and not created:
        click.echo(
            "\nThere is no circle yet, so every mail will be refused. Create one:\n"
            "  mailcircle circle create ADDRESS --name NAME"
        )
    _run_until_stopped(service)


def _setup_logging(state: _State, level: str | None) -> None:
    """serve and poll log at info unless told otherwise (their own --log-level or the top one)."""
    logs.setup(
        level or state.log_level or "info",
        state.log_format,
        debug_libraries=state.debug_libraries,
    )


def _run_until_stopped(service: Any) -> None:
    click.echo("Press Ctrl-C to stop.")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5) and not service.lost.is_set():
            pass
    except KeyboardInterrupt:
        pass
    click.echo("Stopping...")
    service.stop()
    if service.lost.is_set():
        raise MailcircleError("another process took over this database; stopped")


@main.command()
@click.option("--once", is_flag=True, help="Take what is in the folder now, process it, and exit.")
@_LOG_LEVEL
@pass_state
@_private_files
def poll(state: _State, once: bool, log_level: str) -> None:
    """Run the circle from an IMAP mailbox (the [imap] settings) instead of an SMTP server.

    New mail in imap.folder is stored in the spool, then moved to imap.processed_folder
    (or marked seen). It uses IDLE when the server offers it, and reconnects by itself.
    Outgoing mail and processing run as with `serve`. With --once it takes what is there,
    processes it, sends what is due and exits: for cron.
    """
    from mailcircle.lease import Lease
    from mailcircle.service import Service

    _setup_logging(state, log_level)
    settings = state.settings
    imap = settings.imap
    if not imap.host:
        raise MailcircleError(
            "IMAP is not set up: give imap.host, imap.user and imap.password_env "
            "(or imap.password_command) in the settings file"
        )
    where = f"{imap.folder} on {imap.user}@{imap.host}:{imap.port}"
    if not once:
        service = Service(
            settings, clock=state.clock, listen=False, imap=True, isolate=True, command="poll"
        )
        service.start()
        click.echo(f"mailcircle {__version__} is watching {where}. Database: {settings.database}")
        _run_until_stopped(service)
        return

    lease = Lease(state.db, "poll --once")
    lease.acquire()
    try:
        _poll_once(state, where)
    finally:
        lease.release()


def _poll_once(state: _State, where: str) -> None:
    from mailcircle.inbound.imap import (
        NETWORK_ERRORS,
        ImapPoller,
        describe_error,
        poll_folder_once,
    )
    from mailcircle.outbound.compose import Composer
    from mailcircle.outbound.deliver import deliver_due, transport_for
    from mailcircle.service import bounce_recorder, process_once

    settings = state.settings
    imap = settings.imap
    poller = ImapPoller(
        imap,
        settings.database,
        state.clock,
        max_message_bytes=settings.inbound.max_message_bytes,
    )
    click.echo(f"Looking at {where}...")
    try:
        report = poll_folder_once(poller, state.db)
    except NETWORK_ERRORS as err:
        raise MailcircleError(f"IMAP {imap.host}:{imap.port}: {describe_error(err)}") from None
    click.echo(f"Mailbox: {report}.")
    for problem in report.failed:
        click.echo(f"  not taken, {problem}")
    processed = process_once(settings)  # in a worker process, each mail within its budget
    transport = transport_for(settings.outbound)
    tried = 0
    on_refused = bounce_recorder(state.clock, Composer(state.clock))
    try:
        while batch := deliver_due(state.db, state.clock, transport, on_refused=on_refused):
            tried += batch
    finally:
        transport.close()
    click.echo(f"Processed {processed} mails; {tried} outgoing mails handed on.")


def _ensure_sample_circle(state: _State) -> circles.Circle:
    sample = circles.create(state.db, state.clock, SAMPLE_CIRCLE, "Poets")
    # A local sample has no DKIM signatures to check: it believes From: (sender_check accept).
    sample = circles.set_setting(state.db, sample, "sender_check", "accept")
    members.add(state.db, state.clock, sample, SAMPLE_MEMBER, "You")
    return sample


# --- the operator's toolbox -------------------------------------------------------------------

# Commands that only read: on a missing database they say so instead of creating an empty one.
_READ_ONLY = frozenset(
    {
        "status",
        "circle list",
        "circle show",
        "members list",
        "members export",
        "drafts list",
        "engagement list",
        "round preview",
        "templates list",
        "templates preview",
        "inbox list",
        "inbox show",
        "outbox list",
        "outbox show",
    }
)


def _read_only_command() -> bool:
    ctx = click.get_current_context(silent=True)
    names: list[str] = []
    while ctx is not None and ctx.parent is not None:  # the root's name is the program's
        names.insert(0, ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(names) in _READ_ONLY


def _shown_path(path: Path) -> str:
    """The database path as the operator would type it: ./x.db when under the current folder."""
    try:
        return f"./{path.relative_to(Path.cwd())}"
    except ValueError:
        return str(path)


def _confirm(question: str, yes: bool) -> None:
    if not yes and not click.confirm(question, default=False, err=True):
        raise MailcircleError("nothing was changed (answer y, or give --yes)")


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.option(
    "--stuck-after",
    default=60,
    show_default=True,
    metavar="MINUTES",
    type=click.IntRange(min=1),
    help="Outgoing mail waiting longer than this needs a person.",
)
@pass_state
def status_command(state: _State, as_json: bool, stuck_after: int) -> None:
    """Show each circle's members, queues, rounds and trouble; exit 1 when a person is needed.

    Needs a person: inbound mail held or failed, outgoing mail waiting longer than
    --stuck-after minutes, outgoing mail that failed for good. For monitoring, use the
    exit status, or --json for the figures.
    """
    import json
    from datetime import timedelta

    from mailcircle.circle import status as circle_status

    found = circle_status.report(
        state.db, state.clock.now(), stuck_after=timedelta(minutes=stuck_after)
    )
    if as_json:
        click.echo(json.dumps(found.as_dict(), indent=2, sort_keys=True))
    else:
        if not found.circles:
            click.echo("No circles yet.")
        for c in found.circles:
            people = ", ".join(f"{n} {s}" for s, n in c.members.items())
            last = (
                f"round {c.last_round['number']} at {c.last_round['starts_at']}"
                if c.last_round
                else "none yet"
            )
            waiting = (
                f"{c.outgoing_queued} queued, oldest waiting "
                f"{circle_status.age_text(c.oldest_queued_age_seconds)}"
                if c.oldest_queued_age_seconds is not None
                else "0 queued"
            )
            click.echo(f"{c.name} <{c.address}>")
            for label, value in (
                ("members", people),
                ("drafts queued", c.drafts_queued),
                ("last round", last),
                ("next round", c.next_round),
                (
                    "inbound mail",
                    f"{c.inbound['new']} waiting, {c.inbound['held']} held, "
                    f"{c.inbound['failed']} failed",
                ),
                ("outgoing mail", f"{waiting}, {c.outgoing_failed} failed"),
            ):
                click.echo(f"  {label + ':':15}{value}")
        if found.problems:
            click.echo("Needs a person:")
            for problem in found.problems:
                click.echo(f"  {problem}")
        else:
            click.echo("Nothing needs a person.")
    if not found.ok:
        sys.exit(1)


@circle.command("remove")
@click.argument("circle_address", metavar="CIRCLE")
@click.option("--force", is_flag=True, help="Remove it even with work under way.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def circle_remove(state: _State, circle_address: str, force: bool, yes: bool) -> None:
    """Delete CIRCLE and everything stored for it: members, drafts, critiques, mail.

    Refuses while work is under way (drafts queued, open assignments, outgoing mail not
    sent, inbound mail not processed) unless --force. Asks first unless --yes.
    """
    found = circles.get(state.db, circle_address)
    if not force and (work := operations.open_work(state.db, found)):
        raise MailcircleError(
            f"{found.address} still has work under way ({', '.join(work)}); "
            "use --force to remove it anyway"
        )
    _confirm(f"Delete {found.name} <{found.address}> and everything stored for it?", yes)
    counts = operations.remove_circle(state.db, found, force=True)
    click.echo(f"Removed {found.name} <{found.address}>.")
    for table, n in sorted(counts.items()):
        click.echo(f"  {table}: {n} rows deleted")


@members_group.command("set")
@click.argument("circle_address", metavar="CIRCLE")
@click.argument("email")
@click.option("--name", help="Their name (control characters are removed).")
@click.option("--timezone", help="Their time zone, e.g. Europe/Paris.")
@click.option(
    "--moderator/--member",
    "moderator",
    default=None,
    help="Make them a moderator (they get the circle's notices), or a plain member.",
)
@pass_state
def members_set(
    state: _State,
    circle_address: str,
    email: str,
    name: str | None,
    timezone: str | None,
    moderator: bool | None,
) -> None:
    """Change a member's name, time zone or role."""
    found = circles.get(state.db, circle_address)
    role = None if moderator is None else (members.MODERATOR if moderator else "member")
    member = operations.set_member(state.db, found, email, name=name, timezone=timezone, role=role)
    click.echo(
        f"{member.email} in {found.name}: name {member.name!r}, time zone {member.timezone}, "
        f"role {member.role}."
    )


PROGRESS_EVERY = 500


@members_group.command("import")
@click.argument("circle_address", metavar="CIRCLE")
@click.argument("csv_file", metavar="FILE.csv", type=click.File("r", encoding="utf-8-sig"))
@click.option("--skip-bad", is_flag=True, help="Import the good rows even if some are bad.")
@pass_state
def members_import(state: _State, circle_address: str, csv_file: Any, skip_bad: bool) -> None:
    """Add the members listed in a CSV file (columns name, email, timezone; a header row).

    Every row is checked first (address, time zone, the same address twice); every bad
    row is reported with its line number, and nothing is changed unless --skip-bad.
    People who are already members are reported and left as they are. '-' reads stdin.
    """
    found = circles.get(state.db, circle_address)
    try:
        checked = operations.check_rows(csv_file, found.config.timezone)
    except UnicodeDecodeError:
        raise MailcircleError(f"{csv_file.name} is not UTF-8 text") from None
    for problem in checked.problems:
        click.echo(f"bad row: {problem}", err=True)
    if checked.problems and not skip_bad:
        raise MailcircleError(
            f"{len(checked.problems)} bad rows; nothing was imported "
            "(fix them, or give --skip-bad to import the good rows)"
        )
    total = len(checked.rows)

    def progress(done: int) -> None:
        if done % PROGRESS_EVERY == 0 and done < total:
            click.echo(f"  {done} of {total} rows done...", err=True)

    result = operations.import_rows(state.db, state.clock, found, checked.rows, progress=progress)
    for line in result.existing:
        click.echo(f"skipped: {line}", err=True)
    click.echo(
        f"Imported {len(result.added)} members into {found.name}; "
        f"{len(result.existing)} were already members"
        + (f"; {len(checked.problems)} bad rows skipped." if checked.problems else ".")
    )


@members_group.command("export")
@click.argument("circle_address", metavar="CIRCLE")
@click.argument("email")
@click.option("--raw", is_flag=True, help="Include the text of their inbound and outgoing mail.")
@pass_state
def members_export(state: _State, circle_address: str, email: str, raw: bool) -> None:
    """Print everything stored about EMAIL in CIRCLE as JSON (a member's data request).

    Their member record, drafts with their text, assignments, critiques given and
    received, confirmations, bounces, digests sent, engagement answers, the inbound mail
    holding their words (metadata; the mail itself with --raw) and the mail sent to them.
    """
    import json

    from mailcircle.circle import member_data

    found = circles.get(state.db, circle_address)
    data = member_data.export(state.db, state.clock, found, email, raw=raw)
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@members_group.command("erase")
@click.argument("circle_address", metavar="CIRCLE")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def members_erase(state: _State, circle_address: str, email: str, yes: bool) -> None:
    """Erase everything stored about EMAIL in CIRCLE (a member's request to be forgotten).

    Their drafts' and critiques' text and their inbound mail are blanked, their record is
    anonymised, tokens that lead to them are closed, mail to them is deleted, and their
    open assignments pass to backups. Others' critiques of their drafts are kept. Asks
    first unless --yes; `members export` first if they want a copy.
    """
    from mailcircle.circle import member_data
    from mailcircle.outbound.compose import Composer

    found = circles.get(state.db, circle_address)
    member = members.find(state.db, found, email, include_left=True)
    if member is None:
        raise MailcircleError(f"{email} is not a member of {found.address}")
    _confirm(f"Erase everything stored about {member.email} in {found.name}?", yes)
    done = member_data.erase(state.db, state.clock, Composer(state.clock), found, email)
    click.echo(f"Erased {done.email} from {found.name}:")
    for line in done.lines():
        click.echo(f"  {line}")


@inbox.command("inject")
@click.argument("mail_file", metavar="FILE", type=click.File("rb"))
@click.option("--to", "rcpt_to", required=True, metavar="ADDRESS", help="The circle address.")
@click.option(
    "--from",
    "mail_from",
    metavar="ADDRESS",
    help="The envelope sender. Default: the address in the mail's From: header.",
)
@pass_state
def inbox_inject(state: _State, mail_file: Any, rcpt_to: str, mail_from: str | None) -> None:
    """Put a mail (an .eml file, or '-' for stdin) in the spool as if it had arrived for ADDRESS.

    The worker of a running `serve` or `poll` then processes it like any other mail. Use
    it for a mail that reached the wrong place, or to try the circle by hand.
    """
    from mailcircle import addresses

    raw = mail_file.read()
    if not raw.strip():
        raise MailcircleError(f"{mail_file.name} is empty")
    limit = state.settings.inbound.max_message_bytes
    if len(raw) > limit:
        raise MailcircleError(
            f"{mail_file.name} is {len(raw)} bytes, over inbound.max_message_bytes ({limit})"
        )
    found = circles.find(state.db, rcpt_to)
    if found is None:
        raise MailcircleError(f"{rcpt_to} is not a circle's address (see `mailcircle circle list`)")
    if mail_from is None:
        header = email.message_from_bytes(raw, policy=email.policy.compat32).get("From", "")
        mail_from = addresses.first_address(str(header))[1]
        if not mail_from:
            raise MailcircleError(f"{mail_file.name} has no From: address; give --from")
    [spool_id] = spool.store(
        state.db,
        state.clock,
        source="inject",
        peer="mailcircle inbox inject",
        mail_from=addresses.normalize(mail_from) if mail_from != "<>" else "",
        recipients=[(addresses.normalize(rcpt_to), found.id)],
        raw=raw,
    )
    click.echo(
        f"Inbound #{spool_id} is in the spool for {addresses.normalize(rcpt_to)}; "
        "a running `mailcircle serve` or `poll` processes it."
    )
