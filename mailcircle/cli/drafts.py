"""`mailcircle drafts ...`: the drafts members sent, listed or withdrawn."""

from __future__ import annotations

import click

from mailcircle.circle import circles
from mailcircle.cli.shared import _Group, _State, _table, pass_state
from mailcircle.db import transaction


@click.group(cls=_Group, name="drafts")
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
