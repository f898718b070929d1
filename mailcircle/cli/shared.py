"""What every command group of the command line shares: the state the commands are given
(settings, database, clock), the one-line `Error: ...` answer, and table printing."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import click
from sqlite_utils import Database

from mailcircle import config
from mailcircle import db as database
from mailcircle.clock import SystemClock
from mailcircle.errors import MailcircleError


class _Group(click.Group):
    """Turns every MailcircleError into click's one-line `Error: ...` and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MailcircleError as err:
            raise click.ClickException(str(err)) from None
        except sqlite3.Error as err:  # a full disk, a locked or damaged database
            raise click.ClickException(_database_fault(err)) from None
        except OSError as err:  # a folder that cannot be written, ...
            where = f" ({err.filename})" if err.filename else ""
            raise click.ClickException(f"{err.strerror or err}{where}") from None


def _database_fault(err: sqlite3.Error) -> str:
    text = str(err)
    if "full" in text:
        return f"the database could not be written: {text}; free some disk space and try again"
    if "locked" in text or "busy" in text:
        return f"the database is busy ({text}); try again in a moment"
    return f"the database could not be used: {text}"


class _State:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._settings: config.Settings | None = None
        self._db: Database | None = None
        self.clock = SystemClock()
        self.log_level: str | None = None  # the top-level --log-level, if given
        self.log_format = "text"
        self.debug_libraries = False

    @property
    def settings(self) -> config.Settings:
        if self._settings is None:
            self._settings = config.load(self.config_path)
        return self._settings

    @property
    def db(self) -> Database:
        if self._db is None:
            path = self.settings.database
            if self.settings.source is None:
                click.echo(f"Using {_shown_path(path)} (no settings file; see --config)", err=True)
            if not path.exists() and _read_only_command():
                raise MailcircleError(
                    f"there is no database at {_shown_path(path)}"
                    + ("" if self.settings.source else " (no settings file; see --config)")
                    + "; this command only reads, so it does not create one"
                )
            self._db = database.connect(path)
        return self._db


pass_state = click.make_pass_decorator(_State)


def _table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> None:
    rows = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for line in [list(headers), *rows]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


# Commands that only read: on a missing database they say so instead of creating an empty one.
_READ_ONLY = frozenset(
    {
        "status",
        "circle list",
        "circle show",
        "members list",
        "members export",
        "drafts list",
        "engagement list",
        "round preview",
        "templates list",
        "templates preview",
        "inbox list",
        "inbox show",
        "outbox list",
        "outbox show",
    }
)


def _read_only_command() -> bool:
    ctx = click.get_current_context(silent=True)
    names: list[str] = []
    while ctx is not None and ctx.parent is not None:  # the root's name is the program's
        names.insert(0, ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(names) in _READ_ONLY


def _shown_path(path: Path) -> str:
    """The database path as the operator would type it: ./x.db when under the current folder."""
    try:
        return f"./{path.relative_to(Path.cwd())}"
    except ValueError:
        return str(path)


def _confirm(question: str, yes: bool) -> None:
    if not yes and not click.confirm(question, default=False, err=True):
        raise MailcircleError("nothing was changed (answer y, or give --yes)")
