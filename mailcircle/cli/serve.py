"""Setting up and running the service: `init`, `serve` and `poll`."""

from __future__ import annotations

import functools
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mailcircle import __version__, config, logs
from mailcircle.circle import circles, members
from mailcircle.cli.shared import _State, pass_state
from mailcircle.errors import MailcircleError

SAMPLE_CIRCLE = "poets@localhost"
SAMPLE_MEMBER = "you@localhost"


_LOG_LEVEL = click.option(
    "--log-level",
    type=click.Choice(logs.LEVELS),
    default=None,
    help="How much to log to standard error (default here: info).",
)


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


@click.command()
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


@click.command()
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


@click.command()
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
    from mailcircle.children import bounce_recorder, process_once
    from mailcircle.inbound.imap import (
        NETWORK_ERRORS,
        ImapPoller,
        describe_error,
        poll_folder_once,
    )
    from mailcircle.outbound.compose import Composer
    from mailcircle.outbound.deliver import deliver_due, transport_for

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
