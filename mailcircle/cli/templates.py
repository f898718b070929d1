"""`mailcircle templates ...`: the mails the circle sends, listed and previewed."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import click

from mailcircle.circle import circles
from mailcircle.cli.shared import _Group, _State, _table, pass_state
from mailcircle.errors import MailcircleError


@click.group(cls=_Group, name="templates")
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
    body = message.get_body(("plain",))
    click.echo("\n" + (body.get_content() if body is not None else "").replace("\r\n", "\n"))
