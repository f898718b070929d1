"""Infrastructure settings from one TOML file, loaded once into a frozen dataclass.

Only infrastructure lives here (where to listen, where to relay, where the database is).
Circles and their own settings live in the database and are changed with ``mailcircle circle``.

The file is found from ``--config``, else the ``MAILCIRCLE_CONFIG`` environment variable;
without either every setting takes its default. Relative paths are read against the folder
of the settings file (or the current folder when there is none).

Every key is declared once, in the dataclasses below (kind, default, meaning and checks;
see mailcircle.setting): reading the file, `mailcircle init`'s sample file and README's
tables all come from those declarations.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailcircle.errors import ConfigError
from mailcircle.setting import (
    ADDRESS,
    FILE,
    FLAG,
    HOST_NAME,
    NAMES,
    NUMBER,
    TEXT,
    Setting,
    closest,
    declare,
    declared,
    toml_file,
)
from mailcircle.setting import HostPort as HostPort  # where the edges take it from

ENV_VAR = "MAILCIRCLE_CONFIG"


@dataclass(frozen=True)
class InboundSettings:
    """Where mail comes in, and how much of it is taken."""

    smtp: HostPort | None = declare(
        ADDRESS,
        HostPort("127.0.0.1", 8025),
        "host:port the SMTP server listens on; empty: no SMTP server",
    )
    lmtp: HostPort | None = declare(
        ADDRESS, None, 'host:port for an LMTP server (e.g. "127.0.0.1:8024"); empty: none'
    )
    max_message_bytes: int = declare(
        NUMBER, 26_214_400, "larger mail is refused during the SMTP dialogue (552)", least=1024
    )
    trusted_authserv_ids: tuple[str, ...] = declare(
        NAMES,
        (),
        "authserv-ids of your own receiving servers whose Authentication-Results are believed",
    )
    max_recipients: int = declare(
        NUMBER, 20, "circle addresses one mail may name; more are refused (452)", least=1
    )
    sender_bytes_per_hour: int = declare(
        NUMBER,
        268_435_456,
        "bytes one envelope sender may have stored in an hour (at least max_message_bytes); "
        "beyond it mail waits (452)",
        least=1024,
    )


@dataclass(frozen=True)
class OutboundSettings:
    """Where outgoing mail goes."""

    relay: HostPort | None = declare(
        ADDRESS,
        None,
        "host:port of the SMTP relay; empty: write every outgoing mail to the maildir",
    )
    starttls: bool = declare(FLAG, False, "use STARTTLS with the relay")
    user: str = declare(TEXT, "", "user name for the relay's AUTH; empty: no AUTH")
    password_env: str = declare(
        TEXT, "", "name of the environment variable holding the relay password"
    )
    maildir: Path = declare(
        FILE,
        Path("outgoing"),
        "Maildir that receives outgoing mail when no relay is set",
        required=True,
    )
    ca_file: Path | None = declare(
        FILE, None, "CA certificates (PEM) to trust for the relay's STARTTLS; empty: the system's"
    )
    helo_name: str = declare(
        HOST_NAME,
        "",
        "the name mailcircle gives in EHLO; empty: the circle's domain (the envelope sender's)",
    )
    idle_seconds: int = declare(
        NUMBER, 30, "close the relay connection after this many idle seconds", least=1
    )

    def password(self) -> str:
        """The relay password, read from the environment when it is needed, never stored."""
        if not self.password_env:
            return ""
        value = os.environ.get(self.password_env)
        if value is None:
            raise ConfigError(
                f"outbound.password_env names the environment variable {self.password_env}, "
                "but it is not set"
            )
        return value


IMAP_SECURITY = ("tls", "starttls", "none")


@dataclass(frozen=True)
class ImapSettings:
    """The mailbox `mailcircle poll` reads (only for poll)."""

    host: str = declare(
        TEXT, "", "IMAP server of the circle's mailbox, for `mailcircle poll`; empty: none"
    )
    port: int = declare(
        NUMBER, 993, "IMAP port (993 for tls, usually 143 for starttls)", least=1, most=65535
    )
    security: str = declare(
        TEXT,
        "tls",
        'how to protect the connection: "tls", "starttls" or "none" (a local server only)',
        choices=IMAP_SECURITY,
    )
    user: str = declare(TEXT, "", "the mailbox's login name")
    password_env: str = declare(
        TEXT, "", "name of the environment variable holding the IMAP password"
    )
    password_command: str = declare(
        TEXT, "", "or: a command that prints the IMAP password (e.g. pass show circle-imap)"
    )
    folder: str = declare(
        TEXT, "INBOX", "the folder where the circle's mail arrives", required=True
    )
    processed_folder: str = declare(
        TEXT, "", "move mail here once stored; empty: leave it, marked seen"
    )
    failed_folder: str = declare(
        TEXT, "", "move mail that cannot be taken here; empty: leave it, flagged"
    )
    poll_seconds: int = declare(
        NUMBER, 60, "how often to look for mail when the server has no IDLE", least=1
    )
    ca_file: Path | None = declare(
        FILE, None, "CA certificates (PEM) to trust for the IMAP server's TLS; empty: the system's"
    )

    def password(self) -> str:
        """The mailbox password: from the environment or a command, read when needed."""
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(
                    f"imap.password_env names the environment variable {self.password_env}, "
                    "but it is not set"
                )
            return value
        if self.password_command:
            try:
                done = subprocess.run(
                    shlex.split(self.password_command),
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as err:
                raise ConfigError(f"imap.password_command could not run: {err}") from None
            if done.returncode != 0:
                raise ConfigError(
                    f"imap.password_command exited with {done.returncode}: "
                    f"{done.stderr.strip()[:200]}"
                )
            return done.stdout.rstrip("\n")
        return ""


@dataclass(frozen=True)
class WorkerSettings:
    """How much one mail may take of the worker."""

    mail_cpu_seconds: int = declare(
        NUMBER, 10, "CPU seconds one mail may take; past it, twice, it is set aside", least=1
    )
    mail_memory_mb: int = declare(
        NUMBER, 512, "memory (MB) one mail may take; past it, twice, it is set aside", least=64
    )


@dataclass(frozen=True)
class Settings:
    database: Path = declare(
        FILE,
        Path("mailcircle.db"),
        "SQLite file holding circles, members, the spool and the outbox",
        required=True,
    )
    inbound: InboundSettings = field(default_factory=InboundSettings)
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    imap: ImapSettings = field(default_factory=ImapSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    source: Path | None = None  # the file these came from, if any


# The tables of the settings file, in the order the sample file gives them.
TABLES: dict[str, type] = {
    "inbound": InboundSettings,
    "outbound": OutboundSettings,
    "imap": ImapSettings,
    "worker": WorkerSettings,
}

# Every key of the settings file, declared once in the dataclasses above.
DECLARED: tuple[Setting, ...] = declared(Settings, "") + tuple(
    setting for name, cls in TABLES.items() for setting in declared(cls, name)
)

# What each table is for, said in its dataclass's docstring.
TABLE_NOTES = {name: (cls.__doc__ or "").strip() for name, cls in TABLES.items()}

# Each key with its default as the file writes it and its meaning (README checks use these).
DOCUMENTED_KEYS: dict[str, tuple[str, str]] = {
    s.key: (s.kind.toml(s.default), s.meaning) for s in DECLARED
}


def from_dict(data: dict[str, Any], base: Path, source: Path | None = None) -> Settings:
    """Build Settings from a parsed TOML table; every error names the key at fault."""
    top = declared(Settings, "")
    _check_known(data, "", [s.name for s in top] + list(TABLES))
    for name in TABLES:
        if not isinstance(data.get(name, {}), dict):
            raise ConfigError(f"setting {name} must be a table ([{name}]), not {data[name]!r}")
    tables: dict[str, Any] = {}
    for name, cls in TABLES.items():
        table = data.get(name, {})
        settings = declared(cls, name)
        _check_known(table, f"{name}.", [s.name for s in settings])
        tables[name] = cls(**_values(settings, table, base))
    found = Settings(**_values(top, data, base), **tables, source=source)
    _check_together(found)
    return found


def _check_known(table: dict[str, Any], prefix: str, known: list[str]) -> None:
    for key in table:
        if key not in known:
            guess = closest(key, known)
            if guess:
                raise ConfigError(f"unknown setting {prefix}{key}; did you mean {prefix}{guess}?")
            choices = ", ".join(sorted(prefix + k for k in known))
            raise ConfigError(f"unknown setting {prefix}{key} (known here: {choices})")


def _values(settings: tuple[Setting, ...], table: dict[str, Any], base: Path) -> dict[str, Any]:
    """Each given setting checked; paths read against ``base``, defaults for the rest."""
    values = {}
    for setting in settings:
        value = setting.take(table[setting.name]) if setting.name in table else setting.default
        if setting.kind is FILE and value is not None:
            value = base / value
        values[setting.name] = value
    return values


def _check_together(settings: Settings) -> None:
    """The rules that join two or more settings."""
    inbound, outbound, imap = settings.inbound, settings.outbound, settings.imap
    if inbound.smtp is not None and inbound.smtp == inbound.lmtp:
        raise ConfigError(f"settings inbound.smtp and inbound.lmtp both use {inbound.smtp}")
    if inbound.sender_bytes_per_hour < inbound.max_message_bytes:
        raise ConfigError(
            f"setting inbound.sender_bytes_per_hour must be at least {inbound.max_message_bytes}, "
            f"not {inbound.sender_bytes_per_hour}"
        )
    if outbound.password_env and not outbound.user:
        raise ConfigError("setting outbound.password_env is set but outbound.user is empty")
    if imap.host:
        if not imap.user:
            raise ConfigError("setting imap.host is set but imap.user is empty")
        if not (imap.password_env or imap.password_command):
            raise ConfigError(
                "the IMAP password must come from imap.password_env or imap.password_command"
            )
        if imap.password_env and imap.password_command:
            raise ConfigError("set only one of imap.password_env and imap.password_command")


def load(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load settings from ``path``, else $MAILCIRCLE_CONFIG, else all defaults."""
    if path is None:
        path = os.environ.get(ENV_VAR) or None
    if path is None:
        return from_dict({}, Path.cwd())
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"settings file {file} does not exist (run `mailcircle init` to write one)"
        ) from None
    except OSError as err:
        raise ConfigError(f"cannot read settings file {file}: {err.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"settings file {file} is not valid TOML: {err}") from None
    try:
        return from_dict(data, file.resolve().parent, source=file)
    except ConfigError as err:  # say which file: there may be more than one about
        raise ConfigError(f"in {file}: {err}") from None


def sample_file() -> str:
    """The commented settings file `mailcircle init` writes: every key at its default."""
    return toml_file(DECLARED, SAMPLE_HEADER, TABLE_NOTES)


SAMPLE_HEADER = """mailcircle settings. Every key is optional; the values shown are the defaults.
Relative paths are read against the folder holding this file."""
