"""Infrastructure settings from one TOML file, loaded once into a frozen dataclass.

Only infrastructure lives here (where to listen, where to relay, where the database is).
Circles and their own settings live in the database and are changed with ``mailcircle circle``.

The file is found from ``--config``, else the ``MAILCIRCLE_CONFIG`` environment variable;
without either every setting takes its default. Relative paths are read against the folder
of the settings file (or the current folder when there is none).
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

ENV_VAR = "MAILCIRCLE_CONFIG"


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class InboundSettings:
    smtp: HostPort | None = HostPort("127.0.0.1", 8025)
    lmtp: HostPort | None = None
    max_message_bytes: int = 26_214_400
    # authserv-ids of receiving servers whose Authentication-Results headers are believed
    trusted_authserv_ids: tuple[str, ...] = ()
    max_recipients: int = 20  # circle addresses in one SMTP/LMTP transaction; more get 452
    sender_bytes_per_hour: int = 268_435_456  # what one envelope sender may have stored


@dataclass(frozen=True)
class OutboundSettings:
    relay: HostPort | None = None
    starttls: bool = False
    user: str = ""
    password_env: str = ""
    maildir: Path = Path("outgoing")
    ca_file: Path | None = None  # extra CA certificates to trust for the relay's STARTTLS
    helo_name: str = ""  # the name given in EHLO; empty: the domain of the envelope sender
    idle_seconds: int = 30  # a relay connection idle longer than this is closed

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
    host: str = ""  # empty: no IMAP mailbox
    port: int = 993
    security: str = "tls"  # tls, starttls, or none (only sensible on a local server)
    user: str = ""
    password_env: str = ""
    password_command: str = ""
    folder: str = "INBOX"
    processed_folder: str = ""  # empty: leave processed mail where it is, marked \Seen
    failed_folder: str = ""  # empty: leave mail that cannot be taken where it is, \Flagged
    poll_seconds: int = 60  # how often to look when the server has no IDLE
    ca_file: Path | None = None  # extra CA certificates to trust for TLS/STARTTLS

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
    mail_cpu_seconds: int = 10  # one mail's processing; past it the mail is set aside
    mail_memory_mb: int = 512


@dataclass(frozen=True)
class Settings:
    database: Path = Path("mailcircle.db")
    inbound: InboundSettings = field(default_factory=InboundSettings)
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    imap: ImapSettings = field(default_factory=ImapSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    source: Path | None = None  # the file these came from, if any


# Every key with its default and a one-line explanation. `mailcircle init` writes this out
# and a test checks that README.md documents each key.
DOCUMENTED_KEYS: dict[str, tuple[str, str]] = {
    "database": (
        '"mailcircle.db"',
        "SQLite file holding circles, members, the spool and the outbox",
    ),
    "inbound.smtp": (
        '"127.0.0.1:8025"',
        "host:port the SMTP server listens on; empty: no SMTP server",
    ),
    "inbound.lmtp": ('""', 'host:port for an LMTP server (e.g. "127.0.0.1:8024"); empty: none'),
    "inbound.max_message_bytes": ("26214400", "larger mail is refused during the SMTP dialogue"),
    "inbound.trusted_authserv_ids": (
        "[]",
        "authserv-ids of your own receiving servers whose Authentication-Results are believed",
    ),
    "inbound.max_recipients": ("20", "circle addresses one mail may name; more are refused (452)"),
    "inbound.sender_bytes_per_hour": (
        "268435456",
        "bytes one envelope sender may have stored in an hour; beyond it mail waits (452)",
    ),
    "outbound.relay": (
        '""',
        "host:port of the SMTP relay; empty: write every outgoing mail to the maildir",
    ),
    "outbound.starttls": ("false", "use STARTTLS with the relay"),
    "outbound.user": ('""', "user name for the relay's AUTH; empty: no AUTH"),
    "outbound.password_env": ('""', "name of the environment variable holding the relay password"),
    "outbound.maildir": ('"outgoing"', "Maildir that receives outgoing mail when no relay is set"),
    "outbound.ca_file": ('""', "CA certificates (PEM) to trust for the relay; empty: the system's"),
    "outbound.helo_name": (
        '""',
        "the name mailcircle gives in EHLO; empty: the circle's domain (the envelope sender's)",
    ),
    "outbound.idle_seconds": ("30", "close the relay connection after this many idle seconds"),
    "imap.host": ('""', "IMAP server of the circle's mailbox, for `mailcircle poll`; empty: none"),
    "imap.port": ("993", "IMAP port (993 for tls, usually 143 for starttls)"),
    "imap.security": ('"tls"', 'how to protect the connection: "tls", "starttls" or "none"'),
    "imap.user": ('""', "the mailbox's login name"),
    "imap.password_env": ('""', "name of the environment variable holding the IMAP password"),
    "imap.password_command": ('""', "or: a command that prints the IMAP password"),
    "imap.folder": ('"INBOX"', "the folder where the circle's mail arrives"),
    "imap.processed_folder": ('""', "move mail here once stored; empty: leave it, marked seen"),
    "imap.failed_folder": ('""', "move mail that cannot be taken here; empty: leave it, flagged"),
    "imap.poll_seconds": ("60", "how often to look for mail when the server has no IDLE"),
    "imap.ca_file": (
        '""',
        "CA certificates (PEM) to trust for the IMAP server's TLS; empty: the system's",
    ),
    "worker.mail_cpu_seconds": ("10", "CPU seconds one mail may take; past it, it is set aside"),
    "worker.mail_memory_mb": ("512", "memory (MB) one mail may take; past it, it is set aside"),
}


def parse_host_port(key: str, value: Any, *, allow_empty: bool = True) -> HostPort | None:
    if not isinstance(value, str):
        raise ConfigError(f'setting {key} must be a string like "127.0.0.1:8025", not {value!r}')
    text = value.strip()
    if not text:
        if allow_empty:
            return None
        raise ConfigError(f'setting {key} must not be empty; give host:port like "127.0.0.1:25"')
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(
            f'setting {key} must be host:port like "127.0.0.1:8025" (port 1-65535), not {value!r}'
        )
    return HostPort(host, int(port_text))


def _take(table: dict[str, Any], key: str, prefix: str, kind: type, default: Any) -> Any:
    if key not in table:
        return default
    value = table[key]
    # bool is an int in Python; do not let `max_message_bytes = true` through.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"setting {prefix}{key} must be {_kind_name(kind)}, not {value!r}")
    return value


def _names(table: dict[str, Any], key: str, prefix: str) -> tuple[str, ...]:
    """A list of non-empty names (e.g. authserv-ids), lower case."""
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(
            f'setting {prefix}{key} must be a list of names like ["mx.example.org"], not {value!r}'
        )
    return tuple(v.strip().lower() for v in value)


def _kind_name(kind: type) -> str:
    return {str: "a string", int: "a whole number", bool: "true or false"}[kind]


def _check_known(table: dict[str, Any], prefix: str, known: set[str]) -> None:
    for key in table:
        if key not in known:
            choices = ", ".join(sorted(prefix + k for k in known))
            raise ConfigError(f"unknown setting {prefix}{key} (known here: {choices})")


def from_dict(data: dict[str, Any], base: Path, source: Path | None = None) -> Settings:
    """Build Settings from a parsed TOML table; every error names the key at fault."""
    _check_known(data, "", {"database", "inbound", "outbound", "imap", "worker"})
    inbound = data.get("inbound", {})
    outbound = data.get("outbound", {})
    imap = data.get("imap", {})
    for name, table in (("inbound", inbound), ("outbound", outbound), ("imap", imap)):
        if not isinstance(table, dict):
            raise ConfigError(f"setting {name} must be a table ([{name}]), not {table!r}")
    _check_known(
        inbound,
        "inbound.",
        {
            "smtp",
            "lmtp",
            "max_message_bytes",
            "trusted_authserv_ids",
            "max_recipients",
            "sender_bytes_per_hour",
        },
    )
    _check_known(
        outbound,
        "outbound.",
        {
            "relay",
            "starttls",
            "user",
            "password_env",
            "maildir",
            "ca_file",
            "helo_name",
            "idle_seconds",
        },
    )

    defaults_in, defaults_out = InboundSettings(), OutboundSettings()
    max_bytes = _take(inbound, "max_message_bytes", "inbound.", int, defaults_in.max_message_bytes)
    if max_bytes < 1024:
        raise ConfigError(
            f"setting inbound.max_message_bytes must be at least 1024, not {max_bytes}"
        )
    smtp = (
        parse_host_port("inbound.smtp", inbound["smtp"]) if "smtp" in inbound else defaults_in.smtp
    )
    lmtp = parse_host_port("inbound.lmtp", inbound.get("lmtp", ""))
    if smtp is not None and smtp == lmtp:
        raise ConfigError(f"settings inbound.smtp and inbound.lmtp both use {smtp}")

    user = _take(outbound, "user", "outbound.", str, "")
    password_env = _take(outbound, "password_env", "outbound.", str, "")
    if password_env and not user:
        raise ConfigError("setting outbound.password_env is set but outbound.user is empty")
    database = _take(data, "database", "", str, str(Settings.database))
    maildir = _take(outbound, "maildir", "outbound.", str, str(defaults_out.maildir))
    helo_name = _take(outbound, "helo_name", "outbound.", str, "").strip()
    if helo_name and (" " in helo_name or not helo_name.isascii()):
        raise ConfigError(f"setting outbound.helo_name must be a host name, not {helo_name!r}")
    idle_seconds = _take(outbound, "idle_seconds", "outbound.", int, defaults_out.idle_seconds)
    if idle_seconds < 1:
        raise ConfigError("setting outbound.idle_seconds must be at least 1")
    for key, value in (("database", database), ("outbound.maildir", maildir)):
        if not value.strip():
            raise ConfigError(f"setting {key} must not be empty")

    return Settings(
        database=base / database,
        inbound=InboundSettings(
            smtp=smtp,
            lmtp=lmtp,
            max_message_bytes=max_bytes,
            trusted_authserv_ids=_names(inbound, "trusted_authserv_ids", "inbound."),
            max_recipients=_at_least(inbound, "max_recipients", "inbound.", 1, 20),
            sender_bytes_per_hour=_at_least(
                inbound, "sender_bytes_per_hour", "inbound.", max_bytes, 268_435_456
            ),
        ),
        outbound=OutboundSettings(
            relay=parse_host_port("outbound.relay", outbound.get("relay", "")),
            starttls=_take(outbound, "starttls", "outbound.", bool, False),
            user=user,
            password_env=password_env,
            maildir=base / maildir,
            ca_file=(base / ca)
            if (ca := _take(outbound, "ca_file", "outbound.", str, ""))
            else None,
            helo_name=helo_name,
            idle_seconds=idle_seconds,
        ),
        imap=_imap_settings(imap, base),
        worker=_worker_settings(data.get("worker", {})),
        source=source,
    )


def _at_least(table: dict[str, Any], key: str, prefix: str, least: int, default: int) -> int:
    value = int(_take(table, key, prefix, int, default))
    if value < least:
        raise ConfigError(f"setting {prefix}{key} must be at least {least}, not {value}")
    return value


def _worker_settings(table: Any) -> WorkerSettings:
    if not isinstance(table, dict):
        raise ConfigError(f"setting worker must be a table ([worker]), not {table!r}")
    _check_known(table, "worker.", set(WorkerSettings.__dataclass_fields__))
    return WorkerSettings(
        mail_cpu_seconds=_at_least(table, "mail_cpu_seconds", "worker.", 1, 10),
        mail_memory_mb=_at_least(table, "mail_memory_mb", "worker.", 64, 512),
    )


def _imap_settings(table: dict[str, Any], base: Path = Path(".")) -> ImapSettings:
    _check_known(table, "imap.", set(ImapSettings.__dataclass_fields__))
    defaults = ImapSettings()
    values: dict[str, Any] = {}
    for name in ImapSettings.__dataclass_fields__:
        if name == "ca_file":  # a path, read against the settings file's folder
            ca = _take(table, name, "imap.", str, "")
            values[name] = base / ca if ca else None
            continue
        kind = int if isinstance(getattr(defaults, name), int) else str
        values[name] = _take(table, name, "imap.", kind, getattr(defaults, name))
    settings = ImapSettings(**values)
    if settings.security not in IMAP_SECURITY:
        raise ConfigError(
            f'setting imap.security must be "tls", "starttls" or "none", not {settings.security!r}'
        )
    if not 0 < settings.port < 65536:
        raise ConfigError(f"setting imap.port must be a port number (1-65535), not {settings.port}")
    if settings.poll_seconds < 1:
        raise ConfigError("setting imap.poll_seconds must be at least 1")
    if settings.host:
        if not settings.user:
            raise ConfigError("setting imap.host is set but imap.user is empty")
        if not (settings.password_env or settings.password_command):
            raise ConfigError(
                "the IMAP password must come from imap.password_env or imap.password_command"
            )
        if settings.password_env and settings.password_command:
            raise ConfigError("set only one of imap.password_env and imap.password_command")
    if not settings.folder:
        raise ConfigError("setting imap.folder must not be empty")
    return settings


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
    return from_dict(data, file.resolve().parent, source=file)


def sample_file() -> str:
    """The commented settings file `mailcircle init` writes: every key at its default."""
    lines = [
        "# mailcircle settings. Every key is optional; the values shown are the defaults.",
        "# Relative paths are read against the folder holding this file.",
        "",
    ]
    section = ""
    for dotted, (default, help_text) in DOCUMENTED_KEYS.items():
        table, _, key = dotted.rpartition(".")
        if table != section:
            lines += ["", f"[{table}]"]
            section = table
        lines.append(f"# {help_text}")
        lines.append(f"{key} = {default}")
    return "\n".join(lines) + "\n"
