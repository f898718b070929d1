"""The kind of each line of a reply: the first reading the trimmer does (see reply.py).

    e empty   d delimiter (a line of -, _, =, * ...)   s mobile tagline ("Sent from my iPhone")
    b the start of an embedded mail ("On ... wrote:", "-----Original Message-----")
    h a header of an embedded mail (From:, Sent:, Objet: ...)   q a quoted line (">")
    t text   S the "-- " signature separator

A line is read alone first (``kind_of``), then with its neighbours: an attribution wrapped
over several lines is joined, a tagline counts only at the end, a quoted line's tail that a
client re-wrapped without its ">" is still quoted, "Ann wrote:" opens the quote below it.
Every pass is one scan over the lines.
"""

from __future__ import annotations

from mailcircle.inbound import reply_patterns as patterns

READ = patterns.READ


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


def join_wrapped_attributions(lines: list[str]) -> tuple[list[str], list[str], list[str]]:
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


def kinds_of(lines: list[str], known: list[str]) -> list[str]:
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
