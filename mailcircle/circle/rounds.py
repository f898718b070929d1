"""Rounds: when the next one starts. (The assignment algorithm comes with rounds proper.)"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from mailcircle.errors import MailcircleError

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DEFAULT_ROUND_DAY = "monday"
DEFAULT_ROUND_TIME = "09:00"


def next_round_start(now: datetime, settings: dict[str, Any]) -> datetime:
    """The first round start strictly after ``now``: weekly, on the circle's day and time (UTC)."""
    day = str(settings.get("round_day", DEFAULT_ROUND_DAY)).lower()
    if day not in WEEKDAYS:
        raise MailcircleError(f"round_day must be one of {', '.join(WEEKDAYS)}, not {day!r}")
    try:
        at = time.fromisoformat(str(settings.get("round_time", DEFAULT_ROUND_TIME)))
    except ValueError:
        raise MailcircleError("round_time must look like 09:00") from None
    now = now.astimezone(UTC)
    days_ahead = (WEEKDAYS.index(day) - now.weekday()) % 7
    start = datetime.combine(now.date() + timedelta(days=days_ahead), at, tzinfo=UTC)
    return start if start > now else start + timedelta(days=7)
