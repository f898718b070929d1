"""Separating a reviewer's own words from what their mail client added.

Pure: text in, ``Trimmed`` out. Each line is first given a kind (``reply_lines.py``, with
the patterns of many languages in ``reply_patterns.py``):

    e empty   d delimiter (a line of -, _, =, * ...)   s mobile tagline ("Sent from my iPhone")
    b the start of an embedded mail ("On ... wrote:", "-----Original Message-----", in
      many languages)   h a header of an embedded mail (From:, Sent:, Objet: ...)
    q a quoted line (">")   t text

and decisions are made on the string of kinds, which reads like the shape of the mail:
``tteebqqq`` is a top-posted reply, ``bqqqett`` a bottom-posted one, ``bqtqtqt`` an inline
critique, ``tthhhhett`` an Outlook reply. Nothing is destroyed: what is cut is returned
as ``elided``, and ``segments`` pair each quoted passage with the words that answer it.

When the text of the mail being answered is known (``ours``: the circle sent it), that
comes first: every line of it, quoted or not, re-wrapped or not, is ours and never the
reviewer's words (see ``reply_ours.py``); only the lines of the ``draft`` a comment answers
stay beside it.

Linear time: the patterns read at most ``reply_patterns.READ`` characters of a line (an
attribution, a header or a tagline is never longer), and the shape is read by plain scans,
never by a pattern that could backtrack; a hypothesis property in tests/test_reply_properties.py
holds this on lines of up to 100,000 characters.

mailcircle's rules were written against the golden corpus in
../shared/corpora/email_reply_trimmer and our own cases in tests/replies/.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mailcircle.inbound import reply_patterns as patterns
from mailcircle.inbound.reply_lines import join_wrapped_attributions, kind_of, kinds_of
from mailcircle.inbound.reply_ours import Known

__all__ = ["Segment", "Trimmed", "kind_of", "trim_reply"]

SIGNATURE_LINES = 8  # a rule line followed by at most this many lines of text: a signature


@dataclass(frozen=True)
class Segment:
    quoted: str  # the passage of the draft a comment answers ('' for free-standing words)
    reply: str  # the reviewer's words


@dataclass(frozen=True)
class Trimmed:
    text: str  # what the reviewer wrote, with any quoted lines their comments answer
    elided: str  # everything cut away, kept
    segments: tuple[Segment, ...]


class _Lines:
    """The lines still standing, their kinds, where each stood, and what was cut."""

    def __init__(self, lines: list[str], kinds: list[str], written: list[str]) -> None:
        self.lines = lines
        self.kinds = kinds
        self.written = written  # each line as it was written (a joined one with its breaks)
        self.origin = list(range(len(lines)))
        self.elided: list[tuple[int, str]] = []

    @property
    def shape(self) -> str:
        return "".join(self.kinds)

    def cut(self, at: int) -> None:
        """Everything from ``at`` on goes."""
        self.elided.extend(zip(self.origin[at:], self.written[at:], strict=True))
        del self.lines[at:], self.kinds[at:], self.origin[at:], self.written[at:]

    def keep(self, wanted: list[bool]) -> None:
        """Only the lines ``wanted`` stay (one pass, whatever the number dropped)."""
        lines, kinds, origin, written = [], [], [], []
        for keep, line, kind, where, as_written in zip(
            wanted, self.lines, self.kinds, self.origin, self.written, strict=True
        ):
            if keep:
                lines.append(line)
                kinds.append(kind)
                origin.append(where)
                written.append(as_written)
            else:
                self.elided.append((where, as_written))
        self.lines, self.kinds, self.origin, self.written = lines, kinds, origin, written


def trim_reply(text: str, *, ours: Iterable[str] = (), draft: str = "") -> Trimmed:
    """The reviewer's words in a reply. ``ours``: texts of mail the circle sent that the
    reply may quote; ``draft``: the part of them a comment may answer (kept beside it)."""
    raw_lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    known = Known(tuple(ours), draft) if ours or draft else None
    lines, known_kinds, written = join_wrapped_attributions(raw_lines)
    kinds = kinds_of(lines, known_kinds)
    state = _Lines(lines, kinds, written)
    if known is not None:
        state.keep(known.drop_ours(state.lines, state.kinds))
    _trim(state)
    text = "\n".join(line.rstrip() for line in state.written).strip()
    return Trimmed(
        text=text,
        elided="\n".join(line for _, line in sorted(state.elided)).strip("\n"),
        segments=_segments(state.lines, state.kinds),
    )


def _trim(state: _Lines) -> None:
    # A signature after "-- " (RFC 3676), or a short one after any other rule line, is not
    # critique. (A rule line followed by much more text is a reviewer's own section break.)
    shape = state.shape
    texts_after = [0] * (len(shape) + 1)
    marker_after = [False] * (len(shape) + 1)
    for at in range(len(shape) - 1, -1, -1):
        texts_after[at] = texts_after[at + 1] + (shape[at] == "t")
        marker_after[at] = marker_after[at + 1] or shape[at] == "b"
    text_seen = False
    for at, kind in enumerate(shape):
        if kind in "Sd" and text_seen:
            short = texts_after[at + 1] <= SIGNATURE_LINES or marker_after[at + 1]
            if kind == "S" or short:
                state.cut(at)
                break
        text_seen = text_seen or kind == "t"
    # Taglines and delimiter lines go.
    state.keep([kind not in "dsS" for kind in state.kinds])
    shape = state.shape
    if "b" in shape and "t" not in shape:  # nothing but old mail
        state.cut(0)
    # A header that wrapped onto the next lines is still a header.
    for start, end in _wrapped_header_blocks(state.shape):
        state.kinds[start:end] = ["h"] * (end - start)
    shape = state.shape
    first_text = shape.find("t")
    marker = shape.find("b")
    if marker != -1 and first_text != -1 and first_text < marker:
        # Text, then an embedded mail: a top-posted reply. Everything from the marker on is
        # the old mail -- unless the reviewer wrote between or below its quotes.
        after = shape[marker:]
        answered_below = re.fullmatch(r"b[eh]*q[qe]*(t[te]*)", after)
        if not _interleaved(after) and not (
            answered_below and answered_below.group(1).count("t") >= 3
        ):
            state.cut(marker)
    shape = state.shape
    if "t" in shape and _bottom_posted(shape):
        # An attribution at the top, its quote, then the reply: a bottom-posted reply.
        reply_starts = len(shape.rstrip("et"))
        state.keep([at >= reply_starts for at in range(len(shape))])
    # Any remaining markers carry no words of the reviewer's.
    state.keep([kind != "b" for kind in state.kinds])
    # An Outlook-style header block after text starts the old mail.
    shape = state.shape
    block = _header_block(shape)
    if block != -1 and "t" in shape[:block]:
        state.cut(block)
    elif "t" in shape:
        # or only a sender and a date ("From: ..." / "Date: ..."), or a sender's address
        # alone with the old mail below it ("From: Ann <ann@example.net>")
        for at in range(shape.find("t") + 1, len(shape)):
            if shape[at] != "h":
                continue
            line = state.lines[at].strip()
            pair = at + 1 < len(shape) and shape[at + 1] == "h"
            if (pair and patterns.from_and_date(line, state.lines[at + 1])) or (
                at + 1 < len(shape)
                and len(line) <= patterns.READ
                and patterns.FROM_HEADER.match(line)
            ):
                state.cut(at)
                break
    # Trailing quotes after the reviewer's words are the old mail too.
    shape = state.shape
    if "t" in shape:
        tail = len(shape.rstrip("eqh"))
        if tail < len(shape):
            state.cut(tail)
    # A quoted passage kept beside a comment does not start with a bare ">".
    state.keep(_trimmed_quote_edges(state.lines, state.kinds))


def _bare_quote(line: str) -> bool:
    """A quoted blank line: ">", "> >" (a line of many ">" is someone's text)."""
    stripped = line.strip()
    return not patterns.unquote(stripped) and stripped.count(">") <= 4


def _trimmed_quote_edges(lines: list[str], kinds: list[str]) -> list[bool]:
    wanted = [True] * len(kinds)
    at = 0
    while at < len(kinds):
        if kinds[at] != "q":
            at += 1
            continue
        end = at
        while end < len(kinds) and kinds[end] == "q":
            end += 1
        first = at
        while first < end and _bare_quote(lines[first]):
            wanted[first] = False
            first += 1
        at = end
    return wanted


def _wrapped_header_blocks(shape: str) -> list[tuple[int, int]]:
    """Spans of ``h[hte]+h`` each followed by an ``e`` (as long as possible, left to right)."""
    spans = []
    at = 0
    count = len(shape)
    while at < count:
        if shape[at] != "h":
            at += 1
            continue
        run_end = at
        while run_end < count and shape[run_end] in "hte":
            run_end += 1
        last = -1
        for j in range(run_end - 2, at + 1, -1):
            if shape[j] == "h" and shape[j + 1] == "e":
                last = j
                break
        if last != -1:
            spans.append((at, last + 1))
        at = run_end
    return spans


def _interleaved(shape: str) -> bool:
    """Whether ``q[eh]*t[te]*[eh]*q`` occurs: the reviewer wrote between two quotes."""
    after_quote = after_text = after_header = False
    for kind in shape:
        if kind == "q" and (after_text or after_header):
            return True
        next_text = (after_quote and kind == "t") or (after_text and kind in "te")
        next_header = (after_text or after_header) and kind in "eh"
        after_quote = kind == "q" or (after_quote and kind in "eh")
        after_text, after_header = next_text, next_header
    return False


def _bottom_posted(shape: str) -> bool:
    """Whether the shape is ``e*b[eqh]*[et]*``."""
    rest = shape.lstrip("e")
    if not rest.startswith("b"):
        return False
    rest = rest[1:]
    first_text = rest.find("t")
    if first_text == -1:
        return all(kind in "eqh" for kind in rest)
    return all(kind in "eqh" for kind in rest[:first_text]) and all(
        kind in "et" for kind in rest[first_text:]
    )


def _header_block(shape: str) -> int:
    """Where ``h[eh]*h[eh]*h`` first starts: three headers with only blanks between."""
    at = 0
    count = len(shape)
    while at < count:
        if shape[at] != "h":
            at += 1
            continue
        end = at
        headers = 0
        while end < count and shape[end] in "eh":
            headers += shape[end] == "h"
            end += 1
        if headers >= 3:
            return at
        at = end
    return -1


def _segments(lines: list[str], kinds: list[str]) -> tuple[Segment, ...]:
    out: list[Segment] = []
    quoted: list[str] = []
    reply: list[str] = []
    for line, kind in zip(lines, kinds, strict=True):
        if kind == "q":
            if reply:
                out.append(Segment("\n".join(quoted).strip(), "\n".join(reply).strip()))
                quoted, reply = [], []
            quoted.append(patterns.unquote_once(line))
        elif kind == "t" or (kind == "e" and reply):
            reply.append(line)
    if reply or quoted:
        out.append(Segment("\n".join(quoted).strip(), "\n".join(reply).strip()))
    return tuple(s for s in out if s.reply or s.quoted)
