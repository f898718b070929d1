"""Every setting declared once: its name, kind, default, meaning and scope.

A frozen settings dataclass declares each field with :func:`declare`; :func:`declared`
reads the declarations back as :class:`Setting` objects. From them come the checks (kind,
choices, ranges, unknown keys) for both the TOML settings file (config.py) and a circle's
own settings (circle/settings.py), the sample file `mailcircle init` writes, the meanings
`mailcircle circle show` prints, and README's settings tables
(``python scripts/settings-readme.py`` rewrites them; a test keeps them in step).
"""

from __future__ import annotations

import difflib
import json
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mailcircle.errors import ConfigError

CIRCLE = "circle"  # the scope of a circle's own settings; any other scope is a TOML table


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class Wrong(Exception):
    """A value is not of its setting's kind; ``expected`` overrides what the kind expects."""

    def __init__(self, expected: str = "") -> None:
        super().__init__(expected)
        self.expected = expected


class Kind:
    """What a setting holds: a string, unless a subclass says otherwise.

    ``take`` reads a value as the TOML settings file gives it, ``parse`` one typed
    on the command line; both raise :class:`Wrong`. ``toml`` writes a value back for the
    settings file, ``show`` for people.
    """

    expected = "a string"

    def take(self, raw: Any) -> Any:
        if not isinstance(raw, str):
            raise Wrong()
        return raw

    def parse(self, text: str) -> Any:
        return self.take(text.strip())

    def toml(self, value: Any) -> str:
        return json.dumps("" if value is None else str(value), ensure_ascii=False)

    def show(self, value: Any) -> str:
        return "" if value is None else str(value)


class Number(Kind):
    expected = "a whole number"

    def take(self, raw: Any) -> Any:
        # bool is an int in Python; do not let `max_message_bytes = true` through.
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise Wrong()
        return raw

    def parse(self, text: str) -> Any:
        if not re.fullmatch(r"-?[0-9]{1,18}", text.strip()):
            raise Wrong()
        return int(text)

    def toml(self, value: Any) -> str:
        return str(value)


class Flag(Kind):
    expected = "true or false"
    WORDS = {"true": True, "false": False}

    def take(self, raw: Any) -> Any:
        if not isinstance(raw, bool):
            raise Wrong()
        return raw

    def parse(self, text: str) -> Any:
        if text.strip().lower() not in self.WORDS:
            raise Wrong()
        return self.WORDS[text.strip().lower()]

    def toml(self, value: Any) -> str:
        return "true" if value else "false"

    show = toml


class Names(Kind):
    """A list of names (e.g. authserv-ids), kept in lower case."""

    expected = 'a list of names like ["mx.example.org"]'

    def take(self, raw: Any) -> Any:
        if not isinstance(raw, list) or not all(isinstance(v, str) and v.strip() for v in raw):
            raise Wrong()
        return tuple(v.strip().lower() for v in raw)

    def toml(self, value: Any) -> str:
        return json.dumps(list(value), ensure_ascii=False)

    def show(self, value: Any) -> str:
        return ", ".join(value)


class Address(Kind):
    """host:port, e.g. "127.0.0.1:8025" or "[::1]:24"; empty is None (no such server)."""

    expected = 'a string like "127.0.0.1:8025"'

    def take(self, raw: Any) -> Any:
        if not isinstance(raw, str):
            raise Wrong()
        text = raw.strip()
        if not text:
            return None
        host, sep, port = text.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise Wrong('host:port like "127.0.0.1:8025" (port 1-65535)')
        return HostPort(host, int(port))


class File(Kind):
    """A path, read against the folder of the settings file; empty is None."""

    def take(self, raw: Any) -> Any:
        if not isinstance(raw, str):
            raise Wrong()
        return Path(raw) if raw.strip() else None


class HostName(Kind):
    """A host name as given in EHLO; empty is allowed."""

    expected = "a host name"

    def take(self, raw: Any) -> Any:
        if not isinstance(raw, str):
            raise Wrong("a string")
        name = raw.strip()
        if name and (not name.isascii() or any(c.isspace() for c in name)):
            raise Wrong()
        return name


TEXT, NUMBER, FLAG, NAMES, ADDRESS, FILE, HOST_NAME = (
    Kind(),
    Number(),
    Flag(),
    Names(),
    Address(),
    File(),
    HostName(),
)

# A check beyond kind, choices and range: given the value and how to name the setting,
# None when the value is fine, else the whole sentence saying why not.
Check = Callable[[Any, str], str | None]


@dataclass(frozen=True)
class Setting:
    """One setting: declared once, read and checked here, shown from here."""

    name: str
    kind: Kind
    default: Any
    meaning: str  # one sentence a moderator understands
    scope: str = CIRCLE  # CIRCLE, or the settings file's table ("" for the top level)
    least: int | None = None
    most: int | None = None
    choices: tuple[str, ...] = ()  # lower case; what is given is matched in any case
    required: bool = False  # an empty value is refused
    check: Check | None = None

    @property
    def key(self) -> str:
        """The name people use: ``max_words`` for a circle, ``imap.port`` in the file."""
        return f"{self.scope}.{self.name}" if self.scope not in ("", CIRCLE) else self.name

    @property
    def label(self) -> str:
        return self.key if self.scope == CIRCLE else f"setting {self.key}"

    @property
    def expected(self) -> str:
        if self.choices:
            return either(self.choices, quoted=self.scope != CIRCLE)
        if self.least is not None and self.most is not None:
            return f"{self.kind.expected} from {self.least} to {self.most}"
        return self.kind.expected

    def take(self, raw: Any) -> Any:
        """A value as the settings file gives it, checked."""
        return self._checked(self.kind.take, raw)

    def parse(self, text: str) -> Any:
        """A value typed on the command line, checked."""
        return self._checked(self.kind.parse, text)

    def _checked(self, read: Callable[[Any], Any], given: Any) -> Any:
        try:
            value = read(given)
        except Wrong as wrong:
            raise ConfigError(
                f"{self.label} must be {wrong.expected or self.expected}, not {given!r}"
            ) from None
        return self._rules(value)

    def _rules(self, value: Any) -> Any:
        if self.required and value in (None, "", ()):
            raise ConfigError(f"{self.label} must not be empty")
        if self.choices:
            if str(value).lower() not in self.choices:
                raise ConfigError(f"{self.label} must be {self.expected}, not {value!r}")
            value = str(value).lower()
        if isinstance(value, int) and not isinstance(value, bool):
            if self.least is not None and self.most is not None:
                if not self.least <= value <= self.most:
                    raise ConfigError(f"{self.label} must be {self.expected}, not {value}")
            elif self.least is not None and value < self.least:
                raise ConfigError(f"{self.label} must be at least {self.least}, not {value}")
            elif self.most is not None and value > self.most:
                raise ConfigError(f"{self.label} must be at most {self.most}, not {value}")
        if self.check is not None and (problem := self.check(value, self.label)):
            raise ConfigError(problem)
        return value

    def toml(self) -> str:
        """``name = default`` as the settings file writes it."""
        return f"{self.name} = {self.kind.toml(self.default)}"


def declare(
    kind: Kind,
    default: Any,
    meaning: str,
    *,
    least: int | None = None,
    most: int | None = None,
    choices: tuple[str, ...] = (),
    required: bool = False,
    check: Check | None = None,
) -> Any:
    """A dataclass field that is a setting; its name is the field's, its scope the class's."""
    spec = Setting("", kind, default, meaning, "", least, most, choices, required, check)
    return field(default=default, metadata={"setting": spec})


def declared(cls: type, scope: str) -> tuple[Setting, ...]:
    """The settings a dataclass declares, in their order, named for their fields."""
    return tuple(
        replace(f.metadata["setting"], name=f.name, scope=scope)
        for f in fields(cls)
        if "setting" in f.metadata
    )


def either(choices: Iterable[str], *, quoted: bool = False) -> str:
    """'tls, starttls or none' (quoted for the settings file: '"tls", "starttls" or "none"')."""
    words = [json.dumps(c) if quoted else c for c in choices]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name ``name`` was probably meant to be, if one is close."""
    found = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return found[0] if found else None


# --- the same declarations, written out ------------------------------------------------


def toml_file(settings: Iterable[Setting], header: str, notes: Mapping[str, str]) -> str:
    """A settings file with every key at its default, each after its meaning as a comment;
    ``notes`` says what a whole table is for."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    scope = ""
    for setting in settings:
        if setting.scope != scope:
            scope = setting.scope
            lines += ["", "", *_comment(notes.get(scope, "")), f"[{scope}]"]
        lines += ["", *_comment(setting.meaning), setting.toml()]
    return "\n".join(lines) + "\n"


def _comment(text: str) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(text, 88)]


def markdown_table(settings: Iterable[Setting]) -> str:
    """A README table: key, default and meaning of each (circle) setting."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for s in settings:
        default = s.kind.show(s.default)
        rows.append(
            f"| `{s.key}` | {f'`{default}`' if default else '(empty)'} | {_cell(s.meaning)} |"
        )
    return "\n".join(rows) + "\n"


def file_tables(settings: Iterable[Setting], notes: Mapping[str, str]) -> str:
    """README tables of the settings file, one per TOML table, each key as the file writes
    it at its default; ``notes`` says what a table is for."""
    out: list[str] = []
    scope = None
    for s in settings:
        if s.scope != scope:
            scope = s.scope
            title = f"`[{scope}]` — {notes.get(scope, '')}" if scope else "At the top of the file:"
            out += ["", title, "", "| setting and default | meaning |", "| --- | --- |"]
        out.append(f"| `{s.toml()}` | {_cell(s.meaning)} |")
    return "\n".join(out).lstrip("\n") + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def between(text: str, marker: str) -> str:
    """What stands between ``<!-- settings:MARKER -->`` and the next ``<!-- /settings -->``."""
    start = f"<!-- settings:{marker} -->\n"
    if start not in text:
        raise ValueError(f"no {start.strip()} marker")
    return text.split(start, 1)[1].split("<!-- /settings -->", 1)[0]


def put_between(text: str, marker: str, body: str) -> str:
    old = between(text, marker)
    start = f"<!-- settings:{marker} -->\n"
    return text.replace(start + old, start + body, 1)
