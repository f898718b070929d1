"""`mailcircle members ...`: a circle's members, added, imported, changed, exported,
erased and removed."""

from __future__ import annotations

from typing import Any

import click

from mailcircle.circle import circles, members, operations
from mailcircle.cli.shared import _confirm, _Group, _State, _table, pass_state
from mailcircle.errors import MailcircleError


@click.group(cls=_Group, name="members")
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
