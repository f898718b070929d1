"""Members' own settings: their time zone and their name, checked as a member types them.

Pure checks (``check_zone``, ``clean_name``, ``zone_for_offset``) and the two updates. Every
date a member reads is written with ``local_text`` in their own zone.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo, available_timezones

from sqlite_utils import Database

from mailcircle.circle.members import Member
from mailcircle.errors import MailcircleError
from mailcircle.text import clean

MAX_NAME = 60  # characters: a name, not a paragraph

# Zones offered first for an offset seen in a mail's Date: header (the most lived-in ones).
_LIKELY_ZONES = (
    "Europe/London",
    "Europe/Paris",
    "Europe/Helsinki",
    "Europe/Moscow",
    "Asia/Dubai",
    "Asia/Karachi",
    "Asia/Kolkata",
    "Asia/Dhaka",
    "Asia/Bangkok",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
    "America/Sao_Paulo",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
)


@functools.cache
def _known_zones() -> dict[str, str]:
    """Every zone of the tz database, by its lower-case name."""
    return {name.lower(): name for name in available_timezones()}


def check_zone(text: str) -> str:
    """The tz database name a member typed ('europe/paris' -> 'Europe/Paris'), or a clear
    MailcircleError saying what names look like."""
    wanted = " ".join(text.split()).replace(" ", "_")
    if not wanted:
        raise MailcircleError(
            "no time zone was given: write its name, like Europe/Paris or America/New_York"
        )
    found = _known_zones().get(wanted.lower())
    if found is None:
        raise MailcircleError(
            f'"{text.strip()[:60]}" is not a time zone the circle knows. Time zones are '
            "named for a region and a city, like Europe/Paris, America/New_York, "
            "Asia/Kolkata or Australia/Sydney (or UTC)."
        )
    return found


def clean_name(text: str) -> str:
    """A name as a member typed it, without control characters or runs of blanks; a clear
    MailcircleError when nothing usable is left or it looks like an address."""
    name = clean(text)
    if not name:
        raise MailcircleError("no name was given: write it after the command, like: name Ann Lee")
    if "@" in name or "<" in name or ">" in name:
        raise MailcircleError(
            "a name cannot contain @, < or >, so it is never mistaken for an address"
        )
    if len(name) > MAX_NAME:
        raise MailcircleError(f"a name can be at most {MAX_NAME} characters long")
    return name


def zone_of(member: Member) -> ZoneInfo:
    try:
        return ZoneInfo(member.timezone)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def local_text(moment: datetime, member: Member, *, year: bool = False) -> str:
    """A moment in words in the member's own zone: 'Monday 9 March at 10:00 (Europe/Paris)'."""
    shape = "%A %-d %B %Y at %H:%M" if year else "%A %-d %B at %H:%M"
    return moment.astimezone(zone_of(member)).strftime(f"{shape} ({zone_of(member).key})")


def zone_for_offset(offset: timedelta, now: datetime) -> str:
    """A zone that is at ``offset`` from UTC at ``now``: a well-known one when possible."""
    for name in _LIKELY_ZONES:
        if now.astimezone(ZoneInfo(name)).utcoffset() == offset:
            return name
    for name in sorted(_known_zones().values()):
        if "/" in name and not name.startswith(("Etc/", "SystemV/", "posix/", "right/")):
            if now.astimezone(ZoneInfo(name)).utcoffset() == offset:
                return name
    hours = offset.total_seconds() / 3600
    if hours.is_integer() and -12 <= hours <= 14:
        return f"Etc/GMT{-int(hours):+d}"  # POSIX: the sign is the other way round
    return ""


def zone_offer(date_header: str, member: Member, now: datetime) -> str:
    """For a member still on UTC: the zone their mail's Date: header suggests, else ''."""
    if member.timezone != "UTC" or not date_header:
        return ""
    try:
        sent = parsedate_to_datetime(date_header)
    except (TypeError, ValueError, IndexError):
        return ""
    offset = sent.utcoffset() if sent.tzinfo else None  # "-0000" means "unknown"
    if not offset:
        return ""
    return zone_for_offset(offset, now)


def set_timezone(db: Database, member: Member, zone: str) -> None:
    db.execute("UPDATE members SET timezone = ? WHERE id = ?", [check_zone(zone), member.id])


def set_name(db: Database, member: Member, name: str) -> None:
    db.execute("UPDATE members SET name = ? WHERE id = ?", [clean_name(name), member.id])
