"""When rounds start: weekly, on the circle's day and time, in the circle's time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailcircle.circle.settings import WEEKDAYS, CircleSettings


def latest_start(now: datetime, settings: CircleSettings) -> datetime:
    """The most recent round start at or before ``now`` (in UTC)."""
    local = now.astimezone(settings.zone)
    days_back = (local.weekday() - WEEKDAYS.index(settings.round_day)) % 7
    day = local.date() - timedelta(days=days_back)
    start = datetime.combine(day, settings.start_time, tzinfo=settings.zone)
    if start > local:
        start = datetime.combine(day - timedelta(days=7), settings.start_time, tzinfo=settings.zone)
    return start.astimezone(UTC)


def next_round_start(now: datetime, settings: CircleSettings) -> datetime:
    """The first round start strictly after ``now`` (in UTC)."""
    latest = latest_start(now, settings).astimezone(settings.zone)
    following = datetime.combine(
        latest.date() + timedelta(days=7), settings.start_time, tzinfo=settings.zone
    )
    return following.astimezone(UTC)
