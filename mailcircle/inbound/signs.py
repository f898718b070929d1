"""Signs in a mail's own words: thanks, an away message, our subject or our lines quoted
back (a reply to the circle's own mail), the same short words again. Pure functions of
text, used by the sender checks (senders.py) and the note answer (answers.py).
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

from mailcircle.text import FORWARD_WORDS, REPLY_WORDS

LOOP_WINDOW = timedelta(minutes=5)  # a short mail this soon after ours may be a machine's
SHORT_WORDS = 60  # a mail this short that follows ours at once is not taken for a draft

# Our own mails and what a reply to each means to the writer (for the note answer).
ANSWERED = {
    "submission_ack": "the acknowledgement of your draft",
    "critique_receipt": "the receipt for your critique",
    "help": "the circle's help text",
    "status": "your status",
    "welcome": "the welcome",
    "pause_answer": "the answer to your pause or resume",
    "digest_answer": "the answer about your digest",
    "rsvp_answer": "the answer to your RSVP",
    "empty_draft": "our note about an empty draft",
    "processing_failed": "our note about a mail we could not process",
    "confirm_sender": "our request to confirm a mail",
    "note_answer": "our note",
}

_AUTOMATIC_WORDS = (
    "auto",
    "automatic reply",
    "autoreply",
    "auto-reply",
    "out of office",
    "r[ée]ponse automatique",
)
_PREFIX = re.compile(
    rf"^\s*(({'|'.join(REPLY_WORDS + FORWARD_WORDS + _AUTOMATIC_WORDS)})"
    r"\s*(\[\d+\])?\s*:\s*)+",
    re.IGNORECASE,
)
_AWAY = re.compile(
    r"\b(out of (the )?office|i am away|i'm away|i am currently|i'm currently|on vacation"
    r"|on holiday|on leave|will be back|back on|limited access to (my )?e-?mail"
    r"|auto(matic)?[- ]?(reply|response|answer)|abwesend|absent|en vacances|de vacaciones)\b",
    re.IGNORECASE,
)
_THANKS = re.compile(
    r"\b(thanks?|thank you|thx|ty|cheers|merci|danke|gracias|grazie|obrigad[oa]|tack|takk"
    r"|great|perfect|wonderful|lovely|ok|okay|got it|received)\b",
    re.IGNORECASE,
)


def bare_subject(subject: str) -> str:
    """A subject without its Re:/Fwd:/Auto: prefixes, folded for comparison."""
    return " ".join(_PREFIX.sub("", subject).lower().split())


def _norm_line(line: str) -> str:
    return " ".join(line.lstrip("> \t").lower().split())


def body_hash(text: str) -> str:
    words = " ".join(text.lower().split())
    return hashlib.sha256(words.encode("utf-8", "replace")).hexdigest()[:32]


def quotes_our_text(text: str, ours: str) -> bool:
    """Whether ``text`` carries lines of a mail we wrote (quoted, re-wrapped or not)."""
    our_lines = {n for line in ours.split("\n") if len(n := _norm_line(line)) >= 24}
    if not our_lines:
        return False
    found = sum(1 for line in text.split("\n") if _norm_line(line) in our_lines)
    return found >= 2


def sounds_away(text: str) -> bool:
    """Whether a short mail reads like an away message or an automatic acknowledgement."""
    return words_in(text) < SHORT_WORDS and bool(_AWAY.search(text[:500]))


def words_in(text: str) -> int:
    return len(text.split())


def is_thanks(text: str) -> bool:
    """A short note of thanks (recorded quietly, never answered)."""
    own = "\n".join(line for line in text.split("\n") if not line.lstrip().startswith(">"))
    return words_in(own) <= 15 and bool(_THANKS.search(own))
