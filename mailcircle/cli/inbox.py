"""`mailcircle inbox ...`: inbound mail in the spool, what became of it, and held mail."""

from __future__ import annotations

import email
import email.policy
import sys
from typing import Any

import click

from mailcircle.circle import circles, holds
from mailcircle.cli.shared import _Group, _State, _table, pass_state
from mailcircle.db import transaction
from mailcircle.errors import MailcircleError
from mailcircle.inbound import spool


@click.group(cls=_Group)
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
    """Process inbound mail ID again: the running service picks it up at once.

    \b
    ID is the number `mailcircle inbox list` shows. Retry a mail that failed (after
    fixing what its error names), or one refused, ignored, unhandled or set aside as a
    duplicate that should act after all. A held mail is checked again like a new one (its
    sender may be asked again to confirm); to act on it as if its sender had confirmed it,
    use `mailcircle inbox release ID`. A mail already done is not retried (it would act
    twice), nor one still waiting.
    """
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
