"""`mailcircle circle ...`: create, list, change, show and remove circles."""

from __future__ import annotations

import click

from mailcircle.circle import circles, members, operations
from mailcircle.cli.shared import _confirm, _Group, _State, _table, pass_state
from mailcircle.errors import MailcircleError


@click.group(cls=_Group)
def circle() -> None:
    """Create, list, show, change and remove circles."""


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
    counts = members.count_by_circle(state.db)
    found = circles.all_circles(state.db)
    if not found:
        click.echo("No circles yet. Create one: mailcircle circle create ADDRESS --name NAME")
        return
    _table(
        ((c.address, c.name, counts.get(c.id, 0)) for c in found), ("ADDRESS", "NAME", "MEMBERS")
    )


# A VALUE such as -2 is a value to check, not an option to refuse.
@circle.command("set", context_settings={"ignore_unknown_options": True})
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
