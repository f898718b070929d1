"""A circle's own settings (stored as JSON on the circle), with their defaults and checks.

`mailcircle circle set CIRCLE KEY VALUE` changes one; `mailcircle circle show CIRCLE`
lists them all. Every key, its default and its meaning is here, and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailcircle.errors import MailcircleError

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class CircleSettings:
    reviews_per_draft: int = 3  # reviewers each draft gets in a round
    max_reviews_per_round: int = 2  # assignments one member gets in a round, at most
    drafts_per_author: int = 1  # drafts of one author that go out in one round
    max_words: int = 8000  # longer drafts wait, and the author is told why
    participation_needed: int = 3  # critiqued in at least this many ...
    participation_window: int = 4  # ... of their last this-many rounds with assignments
    critique_days: int = 7  # days a reviewer has for a critique
    remind_days: int = 2  # a reminder goes this many days before the due date
    min_reviews: int = 2  # below this, an expired assignment passes to a backup
    backup_days: int = 3  # days a backup reviewer has
    round_day: str = "monday"  # the weekday rounds start on
    round_time: str = "09:00"  # the time rounds start, in the circle's time zone
    timezone: str = "UTC"  # the circle's time zone, for round starts
    address_separator: str = "+"  # poets+help@ or poets-help@, as the mail server delivers
    digest_day: str = "sunday"  # the weekday digests go out, in each member's time zone
    digest_time: str = "18:00"  # the time digests go out, in each member's time zone
    bounce_score_limit: int = 3  # hard bounces count 1, soft 0.5: at this score delivery pauses
    bounce_days: int = 7  # bounces older than this no longer count
    templates_dir: str = ""  # a folder whose templates replace the built-in ones of that name
    sender_check: str = "verify"  # verify: unproven mail waits for the member; accept: trust From:
    talk_reply_to: str = "list"  # where a reply to a talk post goes: list (everyone) or author
    talk_subject_tag: str = ""  # the tag talk subjects carry; '' is [Name], 'none' is no tag
    talk_max_attachment_kb: int = 1024  # talk posts with a bigger attachment are sent back
    talk_max_words: int = 1500  # a longer talk post is taken for a draft and sent back
    unsubscribe_url: str = ""  # an HTTPS one-click unsubscribe endpoint you run; '' for none

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def start_time(self) -> time:
        return time.fromisoformat(self.round_time)


HELP: dict[str, str] = {
    "reviews_per_draft": "reviewers each draft gets in a round",
    "max_reviews_per_round": "assignments one member gets in a round, at most",
    "drafts_per_author": "drafts of one author that go out in one round",
    "max_words": "longer drafts wait, and the author is told why",
    "participation_needed": "rounds critiqued (of participation_window) to keep submitting",
    "participation_window": "how many recent rounds with assignments count",
    "critique_days": "days a reviewer has for a critique",
    "remind_days": "a reminder goes this many days before the due date",
    "min_reviews": "below this many critiques, an expired assignment passes to a backup",
    "backup_days": "days a backup reviewer has",
    "round_day": "the weekday rounds start on",
    "round_time": "the time rounds start (HH:MM), in the circle's time zone",
    "timezone": "the circle's time zone (e.g. Europe/Paris)",
    "address_separator": "+ or -: how the mail server separates poets+help@ (+ also works)",
    "digest_day": "the weekday the weekly digest goes out, in each member's time zone",
    "digest_time": "the time (HH:MM) the digest goes out, in each member's time zone",
    "bounce_score_limit": "bounce score (hard 1, soft 0.5) at which mail to a member pauses",
    "bounce_days": "bounces older than this many days no longer count",
    "templates_dir": "a folder of templates that replace the built-in ones of the same name",
    "sender_check": "verify (unproven mail from a member waits for their confirmation) or "
    "accept (believe the From: header: only for a private test circle)",
    "talk_reply_to": "list or author: where a reply to a talk post goes",
    "talk_subject_tag": "the tag on talk subjects; empty: the circle's name in brackets; none",
    "talk_max_attachment_kb": "talk posts with a larger attachment are sent back (KB)",
    "talk_max_words": "a longer talk post is taken for a draft and sent back",
    "unsubscribe_url": "HTTPS URL of your own one-click unsubscribe endpoint ({address}: who)",
}

SENDER_CHECKS = ("verify", "accept")


def from_json(stored: dict[str, Any]) -> CircleSettings:
    known = {f.name for f in fields(CircleSettings)}
    return CircleSettings(**{k: v for k, v in stored.items() if k in known})


def parse_value(key: str, text: str) -> Any:
    """Check one setting as typed on the command line; the error names the key and why."""
    kinds = {f.name: f.type for f in fields(CircleSettings)}
    if key not in kinds:
        raise MailcircleError(f"unknown circle setting {key!r} (known: {', '.join(sorted(kinds))})")
    default = getattr(CircleSettings(), key)
    if isinstance(default, int):
        if not text.strip().isdigit():
            raise MailcircleError(f"{key} must be a whole number, not {text!r}")
        value: Any = int(text)
        if value < 1 and key not in ("remind_days",):
            raise MailcircleError(f"{key} must be at least 1")
        return value
    value = text.strip()
    if key in ("round_day", "digest_day"):
        if value.lower() not in WEEKDAYS:
            raise MailcircleError(f"{key} must be one of {', '.join(WEEKDAYS)}, not {text!r}")
        return value.lower()
    if key == "templates_dir" and value and not Path(value).is_dir():
        raise MailcircleError(f"templates_dir {value!r} is not a folder")
    if key == "sender_check" and value not in SENDER_CHECKS:
        raise MailcircleError(f"sender_check must be verify or accept, not {text!r}")
    if key == "unsubscribe_url" and value and not value.lower().startswith("https://"):
        raise MailcircleError(f"unsubscribe_url must be an https:// URL, not {text!r}")
    if key == "address_separator" and value not in ("+", "-"):
        raise MailcircleError(f"address_separator must be + or -, not {text!r}")
    if key == "talk_reply_to" and value not in ("list", "author"):
        raise MailcircleError(f"talk_reply_to must be list or author, not {text!r}")
    if key in ("round_time", "digest_time"):
        try:
            time.fromisoformat(value)
        except ValueError:
            raise MailcircleError(f"{key} must look like 09:00, not {text!r}") from None
    if key == "timezone":
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise MailcircleError(
                f"{text!r} is not a time zone (try Europe/Paris or UTC)"
            ) from None
    return value


def check_together(settings: CircleSettings) -> None:
    if settings.participation_needed > settings.participation_window:
        raise MailcircleError("participation_needed cannot be more than participation_window")
    if settings.remind_days >= settings.critique_days:
        raise MailcircleError("remind_days must be fewer than critique_days")
    if settings.min_reviews > settings.reviews_per_draft:
        raise MailcircleError("min_reviews cannot be more than reviews_per_draft")
