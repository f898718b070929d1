"""The moderator's command line: `mailcircle --help`.

`main` is the program; each command group lives in a module named for it (circle.py,
members.py, inbox.py ...). The commands only read their arguments, call the circle (the
domain, where all SQL on circle tables lives) and print what it answers.
"""

from __future__ import annotations

import click

from mailcircle import __version__, config, logs
from mailcircle.cli import (
    circle,
    drafts,
    engagement,
    inbox,
    members,
    outbox,
    rounds,
    serve,
    status,
    templates,
)
from mailcircle.cli.shared import _Group, _State


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar=config.ENV_VAR,
    type=click.Path(dir_okay=False),
    help=f"Settings file (TOML). Default: ${config.ENV_VAR}, else built-in defaults.",
)
@click.option(
    "--log-level",
    type=click.Choice(logs.LEVELS),
    help="How much mailcircle logs to standard error. "
    "Default: info for serve and poll, warning for the other commands.",
)
@click.option(
    "--log-format",
    type=click.Choice(logs.FORMATS),
    default="text",
    show_default=True,
    help="Log lines as text, or one JSON object a line (for a log collector).",
)
@click.option(
    "--debug-libraries",
    is_flag=True,
    help="Let the libraries (aiosmtpd, imapclient, asyncio ...) log at --log-level too; "
    "otherwise they log warnings only.",
)
@click.version_option(__version__, prog_name="mailcircle")
@click.pass_context
def main(
    ctx: click.Context,
    config_path: str | None,
    log_level: str | None,
    log_format: str,
    debug_libraries: bool,
) -> None:
    """mailcircle: a writing circle that runs entirely by email.

    Writers mail drafts to the circle's address; mailcircle stores each one, acknowledges
    it, and each round hands it to fellow members to critique. Start with
    `mailcircle init`, `mailcircle circle create`, `mailcircle members add`, then
    `mailcircle serve`.
    """
    ctx.obj = state = _State(config_path)
    state.log_level, state.log_format, state.debug_libraries = (
        log_level,
        log_format,
        debug_libraries,
    )
    logs.setup(log_level or "warning", log_format, debug_libraries=debug_libraries)


for command in (
    serve.init,
    serve.serve,
    serve.poll,
    status.status_command,
    circle.circle,
    members.members_group,
    drafts.drafts_group,
    rounds.round_group,
    rounds.run_due_command,
    engagement.engagement_group,
    templates.templates_group,
    inbox.inbox,
    outbox.outbox_group,
):
    main.add_command(command)
