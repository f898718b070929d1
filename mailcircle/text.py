"""Text made safe to echo: header values and the subjects our answers quote.

Base layer: receiving, the circle and sending all use these, so they depend on nothing.
"""

from __future__ import annotations

SUBJECT_ECHO = 60  # characters of a stranger's subject that our answers may quote


def clean(text: str) -> str:
    """A value fit for a header: control characters (CR, LF, NUL, other C0, DEL) become
    spaces and runs of white space one space, so no input can break a header."""
    return " ".join("".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in text).split())


def short_subject(subject: str) -> str:
    """The most of an inbound subject our answers echo: cleaned, and cut at SUBJECT_ECHO."""
    text = clean(subject)
    return text if len(text) <= SUBJECT_ECHO else text[: SUBJECT_ECHO - 1].rstrip() + "…"
