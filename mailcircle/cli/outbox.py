"""`mailcircle outbox ...`: outgoing mail, queued, sent and failed."""

from __future__ import annotations

import click

from mailcircle.cli.shared import _Group, _State, _table, pass_state
from mailcircle.db import transaction
from mailcircle.outbound import outbox


@click.group(cls=_Group, name="outbox")
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
