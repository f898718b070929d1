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

mailcircle's rules were written against the golden corpus in
../shared/corpora/email_reply_trimmer; the deliberate differences are listed as waivers
in tests/test_reply.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SIGNATURE_LINES = 8  # a rule line followed by at most this many lines of text: a signature

# "On <date>, <someone> wrote:" and its kin, in many languages (whole line).
_ATTRIBUTIONS = [
    r"(on|at)\s.+\s(wrote|writes|says|said)",
    r"in message\s.+\swrites",
    r"le\s.+\s(a\s+écrit|nous\sa\sdit)",
    r"am\s.+\s(geschrieben|schrieb(en\ssie)?\b.*)",
    r"il\s.+\sha\sscritto",
    r"(dnia|dňa)\s.+\snapisał(\(a\))?",
    r"em\s.+\sescreveu",
    r"el\s.+\sescribió",
    r"op\s.+\s(het\svolgende\sgeschreven|schreef.*)",
    r"den\s.+\sskrev\s.+",
    r"søn\.\s.+\sskrev\s.+",
    r"在.+写道",
    r".+\bwrote\b\s+\bon\b.+",  # Ann <ann@x> wrote on Tue, ...
    r".+\bschrieb\b\s+\bam\b.+",
    r".+\svia\s.+\s(wrote|schrieb)",
    r".+\b[\w.+-]+@[\w.-]+\.\w{2,}\b.+wrote",
    r"\d{4}.{1,80}\s?<[^@<>]+@[^@<>.]+\.[^@<>]+>",  # 2015-10-18 0:17 GMT+03:00 Ann <a@x>:
    r"20\d\d-\d\d-\d\d \d\d:\d\d GMT\+\d\d:\d\d [\w \t]+",
    r".*\d{4}.{1,80}(пользователь).{0,80}написал",
    r".*\d{4}.{1,80}(napisał\(a\)|пише)",
    r"posted by .+ on \d{2}/\d{2}/\d{4}",
    r"begin forwarded message",
    r"début du message transféré ?",
    r"\**-{2,}\s*(forwarded|original|reply) message\s*-{2,}\**",
    r"\**-{2,}\s*(message transféré|ursprüngliche nachricht|mensaje original|原始邮件)\s*-{2,}\**",
]
_ATTRIBUTION = re.compile(rf"^[ \t<>*-]*(?:{'|'.join(_ATTRIBUTIONS)})[ \t.:>*-]*$", re.IGNORECASE)
# The first line of an attribution a client wrapped over two or three lines.
_ATTRIBUTION_START = re.compile(
    r"^[ \t<>-]*(on|le|am|il|dnia|em|el|op|den|at)\s.*$|^.*\d{4}.*$", re.IGNORECASE
)

_HEADER_NAMES_WITH_DATE = (
    "sendt|sent|date|le|gesendet|enviada em|enviado|fecha|data|datum|skickat|发送时间"
)
_HEADER_NAMES = (
    "fra|til|emne|from|to|cc|reply-to|subject|de|expéditeur|à|destinataire|répondre à|objet"
    "|von|an|betreff|para|assunto|asunto|da|risposta|a|oggetto|van|beantwoorden - aan|aan"
    "|onderwerp|från|till|ämne|发件人|收件人|主题"
)
_HEADER = re.compile(
    rf"^[ \t*]*(?:(?:{_HEADER_NAMES_WITH_DATE})[ \t*]*:.*\d|(?:{_HEADER_NAMES})[ \t*]*:.*\w)",
    re.IGNORECASE,
)
_DELIMITER = re.compile(r"^[ \t]*[-_,=+~#*ᐧ—]+[ \t]*$")
_TAGLINES = [
    r"從我的 iphone 傳送",
    r"\w+ from mobile",
    r"[(<]*sent (from|via|with|by) .+",
    r"from my .{1,20}",
    r"get outlook for ",
    r"envoyé depuis (mon|yahoo mail)",
    r"von meinem .+ gesendet",
    r"diese nachricht wurde von .+ gesendet",
    r"inviato da ",
    r"sendt fra min ",
    r"enviado do meu ",
    r"enviado desde mi ",
    r"verzonden met ",
    r"verstuurd vanaf mijn ",
    r"från min ",
]
_TAGLINE = re.compile(rf"^[ \t]*(?:{'|'.join(_TAGLINES)})", re.IGNORECASE)
_MARKDOWN_LINK = re.compile(r"\[([^\]]+)\]\([^)]+\)")


@dataclass(frozen=True)
class Segment:
    quoted: str  # the passage of the draft a comment answers ('' for free-standing words)
    reply: str  # the reviewer's words


@dataclass(frozen=True)
class Trimmed:
    text: str  # what the reviewer wrote, with any quoted lines their comments answer
    elided: str  # everything cut away, kept
    segments: tuple[Segment, ...]


_QUOTE = re.compile(r"^[ \t]*[A-Za-z]{0,10}>")  # "> ", and Usenet's "Ann> "
_SIGNATURE_SEPARATOR = re.compile(r"^--[ \t]?$")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")


def kind_of(line: str) -> str:
    """The kind of one line (see the module's docstring); ``S`` is the "-- " separator."""
    line = line.replace("\xa0", " ")
    if not line.strip():
        return "e"
    if _SIGNATURE_SEPARATOR.match(line):
        return "S"
    if _DELIMITER.match(line):
        return "d"
    if _TAGLINE.match(_MARKDOWN_LINK.sub(r"\1", line)):
        return "s"
    if _ATTRIBUTION.match(line):
        return "b"
    if _HEADER.match(line):
        return "h"
    if _QUOTE.match(line):
        return "q"
    return "t"


def _join_wrapped_attributions(lines: list[str]) -> list[str]:
    """Join an attribution a mail client wrapped over several lines (up to six)."""
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        taken = 1
        if kind_of(line) == "t" and _ATTRIBUTION_START.match(line):
            parts = [line.strip()]
            for span, more in enumerate(lines[index + 1 : index + 6], start=2):
                if kind_of(more) == "b":
                    break  # the next line is an attribution of its own
                parts.append(re.sub(r"^[\s>-]*", "", more).strip())
                joined = " ".join(p for p in parts if p)
                if _ATTRIBUTION.match(joined.replace("\xa0", " ")):
                    line, taken = joined, span
                    break
        out.append(line)
        index += taken
    return out


def _kinds(lines: list[str]) -> list[str]:
    """Each line's kind; inside a ``` code block every line is text."""
    kinds = []
    in_code = False
    for line in lines:
        if _FENCE.match(line):
            in_code = not in_code
            kinds.append("t")
        else:
            kinds.append("t" if in_code and line.strip() else kind_of(line))
    return kinds


def trim_reply(text: str) -> Trimmed:
    lines = _join_wrapped_attributions(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    kinds = _kinds(lines)
    origin = list(range(len(lines)))  # where each remaining line stood, to keep cut text in order
    elided: list[tuple[int, str]] = []

    def cut(at: int) -> None:
        nonlocal lines, kinds, origin
        elided.extend(zip(origin[at:], lines[at:], strict=True))
        lines, kinds, origin = lines[:at], kinds[:at], origin[:at]

    def drop(at: int) -> None:
        elided.append((origin[at], lines[at]))
        del lines[at], kinds[at], origin[at]

    # A signature after "-- " (RFC 3676), or a short one after any other rule line, is not
    # critique. (A rule line followed by much more text is a reviewer's own section break.)
    shape = "".join(kinds)
    for separator in re.finditer("[Sd]", shape):
        rest = shape[separator.end() :]
        short = rest.count("t") <= SIGNATURE_LINES or "b" in rest
        if "t" in shape[: separator.start()] and (separator.group() == "S" or short):
            cut(separator.start())
            break
    # Taglines and delimiter lines go, one by one.
    for at in range(len(kinds) - 1, -1, -1):
        if kinds[at] in "dsS":
            drop(at)
    shape = "".join(kinds)
    if "b" in shape and "t" not in shape:  # nothing but old mail
        cut(0)
    # A header that wrapped onto the next lines is still a header.
    for block in re.finditer(r"h+[hte]+h+(?=e)", shape):
        kinds[block.start() : block.end()] = "h" * (block.end() - block.start())
    shape = "".join(kinds)

    first_text = shape.find("t")
    marker = shape.find("b")
    if marker != -1 and first_text != -1 and first_text < marker:
        # Text, then an embedded mail: a top-posted reply. Everything from the marker on is
        # the old mail -- unless the reviewer wrote between or below its quotes.
        after = shape[marker:]
        interleaved = re.search(r"q[eh]*t[te]*[eh]*q", after)
        answered_below = re.fullmatch(r"b[eh]*q[qe]*(t[te]*)", after)
        if not interleaved and not (answered_below and answered_below.group(1).count("t") >= 3):
            cut(marker)
    shape = "".join(kinds)
    if re.fullmatch(r"e*b[eqh]*[et]*", shape) and "t" in shape:
        # An attribution at the top, its quote, then the reply: a bottom-posted reply.
        reply_starts = len(shape.rstrip("et"))
        for at in range(reply_starts - 1, -1, -1):
            drop(at)
    shape = "".join(kinds)
    # Any remaining markers carry no words of the reviewer's.
    for at in range(len(kinds) - 1, -1, -1):
        if kinds[at] == "b":
            drop(at)
    shape = "".join(kinds)
    # An Outlook-style header block (three headers or more) after text starts the old mail.
    block = re.search(r"h[eh]*h[eh]*h", shape)
    if block and "t" in shape[: block.start()]:
        cut(block.start())
    shape = "".join(kinds)
    # Trailing quotes after the reviewer's words are the old mail too.
    if "t" in shape:
        tail = re.search(r"[eqh]+$", shape)
        if tail:
            cut(tail.start())
    text = "\n".join(line.rstrip() for line in lines).strip()
    return Trimmed(
        text=text,
        elided="\n".join(line for _, line in sorted(elided)).strip("\n"),
        segments=_segments(lines, kinds),
    )


def _segments(lines: list[str], kinds: list[str]) -> tuple[Segment, ...]:
    out: list[Segment] = []
    quoted: list[str] = []
    reply: list[str] = []
    for line, kind in zip(lines, kinds, strict=True):
        if kind == "q":
            if reply:
                out.append(Segment("\n".join(quoted).strip(), "\n".join(reply).strip()))
                quoted, reply = [], []
            quoted.append(re.sub(r"^\s*>\s?", "", line))
        elif kind == "t" or (kind == "e" and reply):
            reply.append(line)
    if reply or quoted:
        out.append(Segment("\n".join(quoted).strip(), "\n".join(reply).strip()))
    return tuple(s for s in out if s.reply or s.quoted)
