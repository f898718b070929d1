"""Rounds: `mailcircle round preview`, and `mailcircle run-due` which starts them (and
every other job that is due)."""

from __future__ import annotations

import click

from mailcircle.circle import circles, operations
from mailcircle.cli.shared import _Group, _State, _table, pass_state
from mailcircle.clock import Clock
from mailcircle.errors import MailcircleError


@click.group(cls=_Group, name="round")
def round_group() -> None:
    """Look at the next round before it starts."""


@round_group.command("preview")
@click.argument("circle_address", metavar="CIRCLE")
@pass_state
def round_preview(state: _State, circle_address: str) -> None:
    """Print who would review whom if CIRCLE's next round started now. Changes nothing."""
    from mailcircle.circle.round_preview import preview

    found = circles.get(state.db, circle_address)
    plan = preview(state.db, found)
    click.echo(
        f"Round {plan.round_number} of {found.name}: {plan.drafts} drafts queued, "
        f"{plan.reviewers} members can review."
    )
    if plan.pairs:
        _table(plan.pairs, ("DRAFT", "AUTHOR", "REVIEWER"))
    for title, reason in plan.waits:
        click.echo(f"waits: {title!r} ({reason.replace('_', ' ')})")
    for title, got in plan.short:
        click.echo(f"short: {title!r} gets only {got} reviewer(s)")


@click.command("run-due")
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
