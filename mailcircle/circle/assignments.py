"""Assignments: who critiques which draft, from a round's start to its last backup.

Kept as the one name callers import; the work lives in one module per idea:

- ``round_inputs``: what a round is planned from, read in one snapshot;
- ``round_start``: a round's plan, its assignments and their mails, written together;
- ``assigning``: one assignment, its mail, and how a reply finds it;
- ``reminders``: reminders before the due date, expiry after;
- ``backups``: lapsed or passed-on assignments handed to other members.
"""

from __future__ import annotations

from mailcircle.circle.assigning import (
    DONE,
    EXPIRED,
    OPEN,
    PASSED_ON,
    assign,
    due_text,
    find_by_message_ids,
    find_by_token,
    get_submission,
    tell_moderators,
)
from mailcircle.circle.backups import find_backups, pass_on
from mailcircle.circle.reminders import expire_overdue, send_reminders
from mailcircle.circle.round_inputs import (
    HISTORY_ROUNDS,
    history,
    next_round_number,
    round_input,
    round_settings,
    settled,
)
from mailcircle.circle.round_start import PLAN_ATTEMPTS, RoundResult, RoundTaken, start_round

__all__ = [
    "DONE",
    "EXPIRED",
    "HISTORY_ROUNDS",
    "OPEN",
    "PASSED_ON",
    "PLAN_ATTEMPTS",
    "RoundResult",
    "RoundTaken",
    "assign",
    "due_text",
    "expire_overdue",
    "find_backups",
    "find_by_message_ids",
    "find_by_token",
    "get_submission",
    "history",
    "next_round_number",
    "pass_on",
    "round_input",
    "round_settings",
    "send_reminders",
    "settled",
    "start_round",
    "tell_moderators",
]
