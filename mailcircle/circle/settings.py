"""A circle's own settings (stored as JSON on the circle), with their defaults and checks.

`mailcircle circle set CIRCLE KEY VALUE` changes one; `mailcircle circle show CIRCLE`
lists them all. Every key is declared once below (kind, default, meaning and checks,
through mailcircle.setting); the checks, `circle show` and README's table come from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailcircle.errors import ConfigError
from mailcircle.setting import CIRCLE, NUMBER, TEXT, Setting, closest, declare, declared

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
SENDER_CHECKS = ("verify", "accept")


def _clock_time(value: Any, label: str) -> str | None:
    try:
        time.fromisoformat(value)
    except ValueError:
        return f"{label} must look like 09:00, not {value!r}"
    return None


def _zone(value: Any, label: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return f"{value!r} is not a time zone (try Europe/Paris or UTC)"
    return None


def _folder(value: Any, label: str) -> str | None:
    if value and not Path(value).is_dir():
        return f"{label} {value!r} is not a folder"
    return None


def _https(value: Any, label: str) -> str | None:
    if value and not value.lower().startswith("https://"):
        return f"{label} must be an https:// URL, not {value!r}"
    return None


@dataclass(frozen=True)
class CircleSettings:
    reviews_per_draft: int = declare(
        NUMBER, 3, "how many members review each draft in a round", least=1
    )
    max_reviews_per_round: int = declare(
        NUMBER, 2, "the most drafts one member is asked to review in a round", least=1
    )
    drafts_per_author: int = declare(
        NUMBER, 1, "how many of one author's drafts go out in a round, oldest first", least=1
    )
    max_words: int = declare(
        NUMBER, 8000, "longer drafts wait, and the author is told why", least=1
    )
    participation_needed: int = declare(
        NUMBER,
        3,
        "rounds a member must have critiqued in, of their last participation_window, "
        "to keep submitting",
        least=1,
    )
    participation_window: int = declare(
        NUMBER, 4, "how many of a member's recent rounds with assignments count", least=1
    )
    critique_days: int = declare(NUMBER, 7, "days a reviewer has for a critique", least=1)
    remind_days: int = declare(
        NUMBER, 2, "a reminder goes this many days before the due date", least=0
    )
    min_reviews: int = declare(
        NUMBER,
        2,
        "below this many critiques, an expired assignment passes to a backup reviewer",
        least=1,
    )
    backup_days: int = declare(NUMBER, 3, "days a backup reviewer has", least=1)
    round_day: str = declare(TEXT, "monday", "the weekday rounds start on", choices=WEEKDAYS)
    round_time: str = declare(
        TEXT, "09:00", "the time rounds start (HH:MM), in the circle's time zone", check=_clock_time
    )
    timezone: str = declare(
        TEXT, "UTC", "the circle's time zone, for round starts (e.g. Europe/Paris)", check=_zone
    )
    address_separator: str = declare(
        TEXT,
        "+",
        "+ or -: how your mail server separates poets+help@ (+ always works)",
        choices=("+", "-"),
    )
    digest_day: str = declare(
        TEXT,
        "sunday",
        "the weekday the weekly digest goes out, in each member's time zone",
        choices=WEEKDAYS,
    )
    digest_time: str = declare(
        TEXT,
        "18:00",
        "the time (HH:MM) the digest goes out, in each member's time zone",
        check=_clock_time,
    )
    bounce_score_limit: int = declare(
        NUMBER,
        3,
        "bounce score (hard 1, soft 0.5, a full mailbox 0) at which mail to a member pauses "
        "and moderators are told",
        least=1,
    )
    bounce_days: int = declare(
        NUMBER, 7, "bounces older than this many days no longer count", least=1
    )
    templates_dir: str = declare(
        TEXT,
        "",
        "a folder of templates that replace the built-in ones of the same name; "
        "empty: the built-in ones",
        check=_folder,
    )
    sender_check: str = declare(
        TEXT,
        "verify",
        "verify: a member's mail acts only when its sender is proven, otherwise it waits for "
        "their confirmation; accept: believe the From: header (a private test circle only)",
        choices=SENDER_CHECKS,
    )
    talk_reply_to: str = declare(
        TEXT,
        "list",
        "where a reply to a talk post goes: list (everyone, through poets+talk@) or author "
        "(the author alone, which shows the author's address)",
        choices=("list", "author"),
    )
    talk_subject_tag: str = declare(
        TEXT,
        "",
        "the tag talk subjects carry, e.g. [Poets]; empty: the circle's name in brackets; "
        "none: no tag",
    )
    talk_max_attachment_kb: int = declare(
        NUMBER,
        1024,
        "a talk post with a larger attachment (KB) is sent back to its author",
        least=1,
    )
    talk_max_words: int = declare(
        NUMBER,
        1500,
        "a longer talk post reads like a draft and is sent back, saying where drafts go",
        least=1,
    )
    unsubscribe_url: str = declare(
        TEXT,
        "",
        "the https:// URL of a one-click unsubscribe endpoint you run (RFC 8058), {address} "
        "in it standing for the recipient; empty: none",
        check=_https,
    )

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def start_time(self) -> time:
        return time.fromisoformat(self.round_time)


# Every circle setting, declared once in the dataclass above.
DECLARED: tuple[Setting, ...] = declared(CircleSettings, CIRCLE)
BY_NAME = {setting.name: setting for setting in DECLARED}

# Each key with its meaning, in order (what `mailcircle circle show` prints beside it).
HELP: dict[str, str] = {setting.name: setting.meaning for setting in DECLARED}


def from_json(stored: dict[str, Any]) -> CircleSettings:
    return CircleSettings(**{k: v for k, v in stored.items() if k in BY_NAME})


def parse_value(key: str, text: str) -> Any:
    """Check one setting as typed on the command line; the error names the key and why."""
    setting = BY_NAME.get(key)
    if setting is None:
        guess = closest(key, BY_NAME)
        raise ConfigError(
            f"unknown circle setting {key!r}; did you mean {guess}?"
            if guess
            else f"unknown circle setting {key!r} (known: {', '.join(sorted(BY_NAME))})"
        )
    return setting.parse(text)


def check_together(settings: CircleSettings) -> None:
    if settings.participation_needed > settings.participation_window:
        raise ConfigError("participation_needed cannot be more than participation_window")
    if settings.remind_days >= settings.critique_days:
        raise ConfigError("remind_days must be fewer than critique_days")
    if settings.min_reviews > settings.reviews_per_draft:
        raise ConfigError("min_reviews cannot be more than reviews_per_draft")
