"""Separating a reviewer's own words from what their mail client added.

Pure: text in, ``Trimmed`` out. Each line is first given a kind:

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

Linear time: the patterns below read at most ``READ`` characters of a line (an attribution,
a header or a tagline is never longer), and the shape is read by plain scans, never by a
pattern that could backtrack; a hypothesis property in tests/test_reply_properties.py
holds this on lines of up to 100,000 characters.

mailcircle's rules were written against the golden corpus in
../shared/corpora/email_reply_trimmer and our own cases in tests/replies/.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mailcircle.inbound import reply_patterns as patterns
from mailcircle.inbound.reply_ours import Known

SIGNATURE_LINES = 8  # a rule line followed by at most this many lines of text: a signature
READ = patterns.READ


@dataclass(frozen=True)
class Segment:
    quoted: str  # the passage of the draft a comment answers ('' for free-standing words)
    reply: str  # the reviewer's words


@dataclass(frozen=True)
class Trimmed:
    text: str  # what the reviewer wrote, with any quoted lines their comments answer
    elided: str  # everything cut away, kept
    segments: tuple[Segment, ...]


def kind_of(line: str) -> str:
    """The kind of one line (see the module's docstring); ``S`` is the "-- " separator."""
    line = line.replace("\xa0", " ")
    stripped = line.strip()
    if not stripped:
        return "e"
    if patterns.SIGNATURE_SEPARATOR.match(line):
        return "S"
    if patterns.DELIMITER.match(line):
        return "d"
    if stripped[0] == ">" and not patterns.unquote(stripped):
        return "q"
    if len(stripped) <= READ:
        if patterns.is_tagline(stripped):
            return "s"
        if patterns.is_attribution(line):
            return "b"
        if patterns.HEADER.match(stripped):
            return "h"
    if patterns.QUOTE.match(line):
        return "q"
    return "t"


def _join_wrapped_attributions(lines: list[str]) -> tuple[list[str], list[str], list[str]]:
    """Join an attribution a mail client wrapped over several lines (up to six), and part
    an attribution from the words a reviewer wrote before it on the same line. Returns the
    lines, their kinds, and each line as it was written (joined lines with their breaks)."""
    out: list[str] = []
    written: list[str] = []
    known = [kind_of(line) for line in lines]
    index = 0
    while index < len(lines):
        line = start = lines[index]
        taken = 1
        kind = known[index]
        if kind in "tb" and len(line) <= READ:
            before, start = patterns.attribution_start(line)
            if before.strip() and patterns.is_attribution(start):
                out.append(before.rstrip())
                written.append(before.rstrip())
                line = start
            elif kind == "t" and start and not start.rstrip().endswith((".", "!", "?")):
                parts = [start.strip()]
                for span, more in enumerate(lines[index + 1 : index + 6], start=2):
                    if len(more) > READ:
                        break
                    said = " ".join(parts).rstrip()
                    if known[index + span - 1] == "b" and said.endswith((".", "!", "?")):
                        break  # a sentence, then an attribution of its own
                    parts.append(patterns.LEADING_MARKS.sub("", more).strip())
                    joined = " ".join(p for p in parts if p)
                    if patterns.is_attribution(joined):
                        if before.strip():
                            out.append(before.rstrip())
                            written.append(before.rstrip())
                        line, taken = joined, span
                        break
                    if known[index + span - 1] == "b":
                        break  # the next line is an attribution of its own
        out.append(line)
        if taken == 1:
            written.append(line)
        else:
            written.append("\n".join([start, *lines[index + 1 : index + taken]]))
        index += taken
    if out == lines:
        return out, known, written
    return out, [kind_of(line) for line in out], written


def _kinds(lines: list[str], known: list[str]) -> list[str]:
    """Each line's kind; inside a ``` code block every line is text."""
    kinds = []
    in_code = False
    for line, kind in zip(lines, known, strict=True):
        if patterns.FENCE.match(line):
            in_code = not in_code
            kinds.append("t")
        else:
            kinds.append("t" if in_code and line.strip() else kind)
    _late_taglines(kinds)
    _rewrapped_quotes(lines, kinds)
    _bare_attributions(lines, kinds)
    _quoted_headers(lines, kinds)
    return kinds


def _quoted_headers(lines: list[str], kinds: list[str]) -> None:
    """A header block inside a quote ("> From: ..." / "> Date: ...") opens the quoted mail:
    its lines are markers, never the passage a comment answers."""
    count = len(kinds)
    at = 0
    while at < count:
        end = at
        while end < count and kinds[end] == "q" and _is_header(patterns.unquote(lines[end])):
            end += 1
        if end - at >= 3 or (
            end - at == 2
            and patterns.from_and_date(patterns.unquote(lines[at]), patterns.unquote(lines[at + 1]))
        ):
            kinds[at:end] = ["b"] * (end - at)
        at = max(end, at + 1)


def _is_header(text: str) -> bool:
    stripped = text.strip()
    return len(stripped) <= READ and bool(patterns.HEADER.match(stripped))


def _bare_attributions(lines: list[str], kinds: list[str]) -> None:
    """ "Ann Writer wrote:" right above a quote (blank lines between) opens it."""
    for at in range(len(kinds) - 1):
        if kinds[at] == "t" and patterns.is_bare_attribution(lines[at]):
            below = at + 1
            while below < len(kinds) - 1 and kinds[below] == "e":
                below += 1
            if kinds[below] == "q":
                kinds[at] = "b"


def _late_taglines(kinds: list[str]) -> None:
    """A tagline counts only at the end of the words it signs: at most two lines of text
    (a name) before the next old mail, rule or end; elsewhere it is the reviewer's text."""
    texts_after = 0
    for at in range(len(kinds) - 1, -1, -1):
        kind = kinds[at]
        if kind in "bhqSd":
            texts_after = 0
        elif kind == "t":
            texts_after += 1
        elif kind == "s" and texts_after > 2:
            kinds[at] = "t"


def _rewrapped_quotes(lines: list[str], kinds: list[str]) -> None:
    """The tail of a quoted line a client re-wrapped without its ">" is not an inline
    comment: one unquoted line right under a long quoted one, and either squeezed between
    two quoted lines, or ending the quote when its first word would not have fitted on the
    quoted line, the quoted line runs on (no full stop) and the tail starts in lower case."""
    count = len(kinds)
    for at in range(1, count):
        above = lines[at - 1].rstrip()
        if kinds[at] != "t" or kinds[at - 1] != "q" or len(above) < 60:
            continue
        if at + 1 < count and kinds[at + 1] == "q":
            kinds[at] = "q"
            continue
        tail = lines[at].strip()
        first_word = tail.split(maxsplit=1)[0] if tail else ""
        if (
            (at + 1 == count or kinds[at + 1] == "e")
            and first_word[:1].islower()
            and not above.endswith((".", "!", "?", ":", ";"))
            and len(above) + 1 + len(first_word) > 76
        ):
            kinds[at] = "q"


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
    lines, known_kinds, written = _join_wrapped_attributions(raw_lines)
    kinds = _kinds(lines, known_kinds)
    state = _Lines(lines, kinds, written)
    if known is not None:
        _mark_ours(state, known)
    _trim(state)
    text = "\n".join(line.rstrip() for line in state.written).strip()
    return Trimmed(
        text=text,
        elided="\n".join(line for _, line in sorted(state.elided)).strip("\n"),
        segments=_segments(state.lines, state.kinds),
    )


def _mark_ours(state: _Lines, known: Known) -> None:
    """Our own lines go; a paragraph of the draft right above a comment stays, as a quote."""
    mine = known.ours_lines(state.lines)
    answerable = known.draft_lines(state.lines)
    kinds = state.kinds
    count = len(kinds)
    # Above the first quote, attribution or header the reviewer writes: even lines of the
    # draft retyped there (to suggest other breaks, say) are theirs.
    first_marker = next((at for at, kind in enumerate(kinds) if kind in "bhq"), count)
    mine[:first_marker] = [False] * first_marker
    # The header block (From:, Sent: ...) right above our text is our mail's.
    for at in range(count - 1, 0, -1):
        if mine[at] and not mine[at - 1]:
            above = at - 1
            while above >= 0 and kinds[above] == "e":
                above -= 1
            while above >= 0 and kinds[above] in "he":
                mine[above] = kinds[above] == "h" or mine[above]
                above -= 1
    # A quoted blank line next to our text is ours too.
    for at in range(count):
        if not mine[at] and kinds[at] == "q" and not patterns.unquote(state.lines[at]).strip():
            near = (at > 0 and mine[at - 1]) or (at + 1 < count and mine[at + 1])
            mine[at] = bool(near)
    for at in range(count - 1, 0, -1):  # spread the blank quoted lines' ownership upwards
        if mine[at] and not mine[at - 1] and kinds[at - 1] == "q":
            mine[at - 1] = not patterns.unquote(state.lines[at - 1]).strip()
    context = [False] * count
    for at in range(count):
        if kinds[at] != "t" or mine[at]:
            continue
        back = at - 1
        while back >= 0 and kinds[back] == "e":
            back -= 1
        while back >= 0 and mine[back] and answerable[back] and not context[back]:
            if not patterns.unquote(state.lines[back]).strip():
                break
            context[back] = True
            back -= 1
    for at in range(count):
        if context[at]:
            kinds[at] = "q"
    state.keep([not mine[at] or context[at] for at in range(count)])


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
    elif "t" in shape:  # or only a sender and a date ("From: ..." / "Date: ...")
        shape = state.shape
        for at in range(shape.find("t") + 1, len(shape) - 1):
            if shape[at : at + 2] == "hh" and patterns.from_and_date(
                state.lines[at], state.lines[at + 1]
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
