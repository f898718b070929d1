"""The moderator's command line: `mailcircle --help`."""

from __future__ import annotations

import email
import email.policy
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import click
from sqlite_utils import Database

from mailcircle import __version__, config
from mailcircle import db as database
from mailcircle.circle import circles, holds, members
from mailcircle.clock import SystemClock
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


class _State:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._settings: config.Settings | None = None
        self._db: Database | None = None
        self.clock = SystemClock()

    @property
    def settings(self) -> config.Settings:
        if self._settings is None:
            self._settings = config.load(self.config_path)
        return self._settings

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = database.connect(self.settings.database)
        return self._db


pass_state = click.make_pass_decorator(_State)

_LOG_LEVEL = click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning"]),
    default="info",
    show_default=True,
    help="How much to log to standard error.",
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
@click.version_option(__version__, prog_name="mailcircle")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """mailcircle: a writing circle that runs entirely by email.

    Writers mail drafts to the circle's address; mailcircle stores each one, acknowledges
    it, and (in later versions) hands it to fellow members to critique. Start with
    `mailcircle init`, `mailcircle circle create`, `mailcircle members add`, then
    `mailcircle serve`.
    """
    ctx.obj = _State(config_path)


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
    """Create and list circles."""


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
    body = message.get_body(("plain",))  # type: ignore[attr-defined]
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
    """Run everything due once: rounds, reminders, expiry. For cron and for tests.

    Every job works out what is due from the database and the time, so running it twice
    does nothing the second time. The mails it queues are sent by `serve` or `poll`.
    """
    from mailcircle.clock import FakeClock
    from mailcircle.outbound.compose import Composer
    from mailcircle.scheduler import run_due

    clock = state.clock
    if now_text:
        from datetime import datetime

        try:
            moment = datetime.fromisoformat(now_text)
        except ValueError:
            raise MailcircleError(f"--now must be an ISO date and time, not {now_text!r}") from None
        if moment.tzinfo is None:
            raise MailcircleError("--now needs a time zone, e.g. 2026-03-09T09:00:00+00:00")
        clock = FakeClock(moment)
    report = run_due(state.db, clock, Composer(clock))
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
    """Add, list and remove a circle's members."""


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

    _setup_logging(log_level)
    settings = state.settings
    db = state.db
    no_circles = not circles.all_circles(db)
    if sample is None:  # the embedded default gets a sample; a configured install does not
        sample = settings.source is None
    created = _ensure_sample_circle(state) if no_circles and sample else None
    service = Service(settings, clock=state.clock)
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


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiosmtpd and imapclient log every protocol command at INFO; keep that for debug.
    for noisy in ("mail.log", "imapclient"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)


def _run_until_stopped(service: Any) -> None:
    click.echo("Press Ctrl-C to stop.")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    click.echo("Stopping...")
    service.stop()


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
    from mailcircle.inbound.imap import NETWORK_ERRORS, ImapPoller, poll_folder_once
    from mailcircle.inbound.process import Worker
    from mailcircle.inbound.verify import SenderCheck
    from mailcircle.outbound.compose import Composer
    from mailcircle.outbound.deliver import deliver_due, transport_for
    from mailcircle.service import Service

    _setup_logging(log_level)
    settings = state.settings
    imap = settings.imap
    if not imap.host:
        raise MailcircleError(
            "IMAP is not set up: give imap.host, imap.user and imap.password_env "
            "(or imap.password_command) in the settings file"
        )
    where = f"{imap.folder} on {imap.user}@{imap.host}:{imap.port}"
    if not once:
        service = Service(settings, clock=state.clock, listen=False, imap=True)
        service.start()
        click.echo(f"mailcircle {__version__} is watching {where}. Database: {settings.database}")
        _run_until_stopped(service)
        return

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
        raise MailcircleError(f"IMAP {imap.host}:{imap.port}: {err}") from None
    click.echo(f"Mailbox: {report}.")
    for problem in report.failed:
        click.echo(f"  not taken, {problem}")
    worker = Worker(
        state.db,
        state.clock,
        Composer(state.clock),
        SenderCheck(settings.inbound.trusted_authserv_ids),
    )
    processed = 0
    while batch := worker.process_pending():
        processed += batch
        click.echo(f"  processed {processed} mails...")
    transport = transport_for(settings.outbound)
    tried = 0
    try:
        while batch := deliver_due(state.db, state.clock, transport):
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
