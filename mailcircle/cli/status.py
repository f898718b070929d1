"""`mailcircle status`: each circle at a glance, and whether a person is needed."""

from __future__ import annotations

import sys

import click

from mailcircle.cli.shared import _State, pass_state


@click.command("status")
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
