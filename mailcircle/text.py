"""Text made safe to echo, and the words mail clients put before a subject.

Base layer: receiving, the circle and sending all use these, so they depend on nothing.
"""

from __future__ import annotations

import re

SUBJECT_ECHO = 60  # characters of a stranger's subject that our answers may quote

# Control characters (C0, DEL, C1) and the invisible marks that reorder what follows them
# (bidirectional embeddings, overrides and isolates: a name could otherwise show as another).
# The ones that separate (tab, line breaks) become spaces; the rest go.
_UNSHOWN: dict[int, str | None] = {
    code: " " if chr(code).isspace() else None
    for code in (*range(32), *range(127, 160), *range(0x202A, 0x202F), *range(0x2066, 0x206A))
}

# "Re:" in English, German, Scandinavian, Finnish, Dutch and Italian clients; forwards
REPLY_WORDS = ("re", "aw", "sv", "vs", "antw", "antwort", "rif", "ref")
FORWARD_WORDS = ("fw", "fwd", "wg", "tr")
_PREFIXES = re.compile(
    rf"^\s*(?:(?:{'|'.join(REPLY_WORDS + FORWARD_WORDS)})\s*(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE
)


def clean(text: str) -> str:
    """A value fit for a header or to show as a name: line breaks and tabs become spaces,
    other control characters (NUL, escapes) and direction overrides go, and runs of white
    space become one space, so no input can break a header or disguise itself."""
    return " ".join(text.translate(_UNSHOWN).split())


def short_subject(subject: str) -> str:
    """The most of an inbound subject our answers echo: cleaned, and cut at SUBJECT_ECHO."""
    text = clean(subject)
    return text if len(text) <= SUBJECT_ECHO else text[: SUBJECT_ECHO - 1].rstrip() + "…"


def without_prefixes(subject: str) -> str:
    """A subject without the Re:, AW:, Fwd: (or Re[2]:) its clients put before it."""
    return _PREFIXES.sub("", subject).strip()


def first_word(text: str, subject: str) -> str:
    """The first word of a short answer, lower-case: of its first line of its own (not
    quoted), else of its subject without prefixes ("yes", "release", "no")."""
    own = next(
        (line for line in text.split("\n") if line.strip() and not line.lstrip().startswith(">")),
        "",
    )
    words = (own or without_prefixes(subject)).lower().split()
    return words[0].strip(".,!:;\"'") if words else ""
