"""Where log lines go: standard error, as text or one JSON object a line.

mailcircle's own loggers (``mailcircle.*``) log at the level asked for. The libraries under
it (aiosmtpd logs every SMTP command, imapclient every IMAP one, and asyncio, schedule and
flufl.bounce their own chatter) stay at WARNING unless ``debug_libraries`` is asked for, so
``--log-level debug`` shows mailcircle's debugging and not 95% protocol noise.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TextIO

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
# The loggers of the libraries mailcircle runs on: quiet unless asked for.
LIBRARIES = ("mail.log", "mail", "aiosmtpd", "imapclient", "flufl", "asyncio", "schedule")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a test runner may swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup(level: str = "warning", fmt: str = "text", *, debug_libraries: bool = False) -> None:
    """Send log lines to standard error; calling it again replaces the earlier setup."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    number = getattr(logging, level.upper())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    quiet = number if debug_libraries else max(number, logging.WARNING)
    root.setLevel(quiet)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(quiet)
    # Only when it differs from the root's, so a default setup leaves "mailcircle" to follow
    # whatever the root is set to later (a test's log capture, an embedding program).
    logging.getLogger("mailcircle").setLevel(number if number < quiet else logging.NOTSET)
