"""`mailcircle engagement ...`: a circle's engagement days and their agendas."""

from __future__ import annotations

import click

from mailcircle.circle import circles
from mailcircle.cli.shared import _Group, _State, _table, pass_state
from mailcircle.db import transaction


@click.group(cls=_Group, name="engagement")
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
    from mailcircle.circle import engagement

    found = circles.get(state.db, circle_address)
    rows = engagement.listing(state.db, found)
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

    found = circles.get(state.db, circle_address)
    with transaction(state.db):
        text = engagement.add_item(
            state.db, state.clock, engagement.find_day(state.db, found, day), item, "cli"
        )
    click.echo(f"{found.name}: on the agenda of {day}: {text}")
