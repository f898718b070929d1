"""Raw bytes -> a plain ``Mail`` object, through mail-parser.

mail-parser never raises, even on garbage, so what it returns is checked here; the rest of
mailcircle only ever sees ``Mail``. Known traps handled: ``.body`` glues the plain and HTML
parts together (we read ``text_plain`` and fall back to the HTML as text), and a missing
Message-ID comes back as ''.
"""

from __future__ import annotations

import re
from email.header import Header, decode_header, make_header
from email.message import Message
from html.parser import HTMLParser

import mailparser

from mailcircle import addresses
from mailcircle.mail import Attachment, Mail
from mailcircle.text import clean

_MSGID = re.compile(r"<[^<>\s]+>")


def _header_text(value: object) -> str:
    """A header as readable text: RFC 2047 words decoded, folding undone, junk tolerated."""
    if isinstance(value, Header):  # raw 8-bit bytes in a header (not RFC 2047)
        chunks = []
        for chunk, charset in decode_header(value):
            if isinstance(chunk, str):
                chunks.append(chunk)
                continue
            for codec in (charset, "utf-8", "latin-1"):
                try:
                    chunks.append(chunk.decode(codec or "utf-8"))
                    break
                except (LookupError, UnicodeDecodeError):
                    continue
        return " ".join(" ".join(chunks).split())
    text = str(value)
    try:
        text = str(make_header(decode_header(text)))
    except Exception:  # an encoded-word in an unknown charset: decode the others anyway
        text = _decode_words(text)
    return " ".join(text.split())


def _decode_words(text: str) -> str:
    """Each encoded-word on its own: those in a charset Python does not know are read as
    UTF-8 (else Latin-1), so one bad part leaves the rest of the header readable."""
    try:
        parts = decode_header(text)
    except Exception:
        return text
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        for codec in (charset or "ascii", "utf-8", "latin-1"):
            try:
                out.append(chunk.decode(codec))
                break
            except (LookupError, UnicodeDecodeError):
                continue
    return "".join(out)


def _headers(message: Message) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for name, value in message.items():
        found.setdefault(name.lower(), []).append(_header_text(value))
    return {name: tuple(values) for name, values in found.items()}


_BLOCKS = frozenset(
    "address article aside blockquote center dd details div dl dt fieldset figcaption figure"
    " footer form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table"
    " tbody thead tfoot tr ul".split()
)
_HIDDEN = frozenset("style script title template noscript".split())
_SHOWN_AS_WRITTEN = re.compile(r"white-space\s*:\s*pre", re.IGNORECASE)
_COLLAPSIBLE = re.compile(r"[ \t\r\n\f]+")
QUOTE_DEPTH = 20  # deeper blockquotes read as this deep (no mail nests more; a hostile one
# would otherwise make every line as long as its depth)


class _TextFromHTML(HTMLParser):
    """An HTML body as readable text, line for line (poems arrive as HTML too).

    A real parser (the standard library's): ``<br>``, ``<p>`` and block elements break
    lines, ``<pre>`` keeps its own, ``&nbsp;`` indents stay exactly, ``<blockquote>`` reads as
    "> " lines however deep, and comments, ``<head>``, ``<style>`` and ``<script>`` never show.
    One pass over the markup: linear in its length.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.depth = 0  # blockquotes open
        self.hidden = 0  # hidden elements open (<style>, <script> ...)
        self.head = False  # in <head> (until <body> or the first visible block)
        self.styled: list[bool] = []  # open <span>/<div>: does each keep white space?
        self.pre = 0
        self.pre_starts = False
        self.blank_wanted = False

    @classmethod
    def convert(cls, markup: str) -> str:
        parser = cls()
        parser.feed(markup)
        parser.close()
        parser._break()
        text = "\n".join(parser.lines).replace("\xa0", " ")
        return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")

    def _end_line(self) -> None:
        """End the line being written, even an empty one (a ``<br>``)."""
        prefix = "> " * min(self.depth, QUOTE_DEPTH)
        if self.blank_wanted and self.lines:
            self.lines.append(prefix)
        self.blank_wanted = False
        self.lines.append(prefix + "".join(self.current))
        self.current = []

    def _break(self) -> None:
        """End the line being written, if any (a block starts or ends)."""
        if self.current:
            self._end_line()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "head":
            self.head = True
        elif tag in _HIDDEN:
            self.hidden += 1
        elif self.hidden:
            return
        if tag == "body" or tag == "br" or tag in _BLOCKS:
            self.head = False  # a browser ends <head> there, closed or not
        if tag in ("span", "div"):
            # Apple Mail's tabs, and some clients' whole text: style="white-space: pre"
            kept = any(
                name == "style" and _SHOWN_AS_WRITTEN.search(value or "") for name, value in attrs
            )
            self.styled.append(kept)
            self.pre += kept
        if tag == "br":
            self._end_line()
        elif tag in _BLOCKS:
            self._break()
            if tag == "blockquote":
                if self.blank_wanted and self.lines:
                    self.lines.append(("> " * min(self.depth, QUOTE_DEPTH)).rstrip())
                self.depth += 1
                self.blank_wanted = False
            elif tag == "pre":
                self.pre += 1
                self.pre_starts = True

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br" or tag not in _BLOCKS:
            self.handle_starttag(tag, attrs)
        else:
            self._break()

    def handle_endtag(self, tag: str) -> None:
        if tag == "head":
            self.head = False
        elif tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif self.hidden:
            return
        if tag in ("span", "div") and self.styled:
            self.pre -= self.styled.pop()
        if tag in ("td", "th"):
            if self.current and not self.current[-1].endswith(" "):
                self.current.append(" ")  # cells of a row read apart
        elif tag in _BLOCKS:
            self._break()
            if tag == "p":
                self.blank_wanted = True
            elif tag == "blockquote" and self.depth:
                self.depth -= 1
                self.blank_wanted = False
            elif tag == "pre" and self.pre:
                self.pre -= 1
                self.blank_wanted = True

    def handle_data(self, data: str) -> None:
        if self.hidden or self.head:
            return
        if self.pre:
            text = data.replace("\r\n", "\n").replace("\r", "\n")
            if self.pre_starts and text.startswith("\n"):
                text = text[1:]  # a newline right after <pre> is not content
            self.pre_starts = False
            for number, part in enumerate(text.split("\n")):
                if number:
                    self._end_line()
                if part:
                    self.current.append(part)
            return
        text = _COLLAPSIBLE.sub(" ", data)
        if not self.current or self.current[-1].endswith(" "):
            text = text.lstrip(" ")
        if text:
            self.current.append(text)


def html_to_text(markup: str) -> str:
    """An HTML body as readable text, line for line (see ``_TextFromHTML``)."""
    return _TextFromHTML.convert(markup)


def _clean(text: str) -> str:
    """No control characters in a value that may reach a header (CR, LF, NUL, other C0)."""
    return text if text.isprintable() else clean(text)


def _from_header(message: Message) -> tuple[str, str]:
    """(display name, address) of the From: header, read as mail clients and DMARC read it:
    the address comes from the header as written, before any encoded word in the display
    name is decoded (so ``=?utf-8?q?ben=40example.net?= <eve@attacker.test>`` is eve's)."""
    raw = message.get("from")
    if raw is None:
        return "", ""
    if isinstance(raw, Header):  # raw 8-bit bytes: the address part is ASCII anyway
        raw = str(raw)
    name, address = addresses.from_header(str(raw))
    return _clean(_header_text(name)), address


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse(raw: bytes) -> Mail:
    parsed = mailparser.parse_from_bytes(raw)
    message: Message = parsed.message
    headers = _headers(message)

    def first(name: str) -> str:
        values = headers.get(name, ())
        return values[0] if values else ""

    from_name, from_addr = _from_header(message)
    message_ids = _MSGID.findall(first("message-id"))
    html_text = _normalize_newlines("\n".join(parsed.text_html or []))
    plain = _normalize_newlines("\n".join(parsed.text_plain or []))
    if message.is_multipart() and any(
        part.get_content_type() == "message/rfc822" for part in message.walk()
    ):
        # A forwarded mail inside is not the sender's text: read only the outer parts.
        plain = _normalize_newlines("\n".join(_outer_texts(message))) or plain
    body_part = _first_text_part(message)
    if "\x1b" in plain and body_part is not None:
        # ISO-2022-JP declared 7bit comes back from mail-parser undecoded.
        plain = _normalize_newlines(_decode_part(body_part) or plain)
    if body_part is not None and str(body_part.get_param("format", "")).lower() == "flowed":
        delsp = str(body_part.get_param("delsp", "no")).lower() == "yes"
        plain = unflow(plain, delsp=delsp)
    text = plain if plain.strip() else html_to_text(html_text) if html_text else ""
    attachments = tuple(
        Attachment(
            filename=_clean(str(item.get("filename") or "")),
            content_type=str(item.get("mail_content_type") or "application/octet-stream"),
            payload=_attachment_bytes(item),
        )
        for item in parsed.attachments or []
    )
    return Mail(
        message_id=message_ids[0] if message_ids else "",
        from_name=from_name,
        from_addr=from_addr,
        subject=_clean(_header_text(first("subject"))),
        text=text,
        html=html_text,
        attachments=attachments,
        in_reply_to=" ".join(_MSGID.findall(first("in-reply-to"))[:1]),
        references=tuple(_MSGID.findall(" ".join(headers.get("references", ())))),
        headers=headers,
        defects=tuple(str(d) for d in (parsed.defects_categories or [])),
    )


def unflow(text: str, *, delsp: bool = False) -> str:
    """Decode RFC 3676 format=flowed: join soft line breaks, undo space-stuffing.

    A line ending in a space continues on the next line (with DelSp=yes that space goes),
    but never onto a line of another quote depth (section 4.5: that break is hard); every
    other line break is hard and is kept, as are blank lines and indents, so a poem sent
    from Thunderbird or Apple Mail comes out exactly as its author typed it. Quoted lines
    come out as "> text" ("> > text" two deep).
    """
    out: list[str] = []
    current: list[str] = []
    current_depth = 0

    def finish() -> None:
        joined = "".join(current)
        out.append(("> " * current_depth + joined).rstrip(" ") if current_depth else joined)
        current.clear()

    for raw_line in text.split("\n"):
        depth = 0
        while depth < len(raw_line) and raw_line[depth] == ">":
            depth += 1
        line = raw_line[depth:]
        if line.startswith(" "):  # space-stuffed
            line = line[1:]
        if current and depth != current_depth:
            finish()  # a flowed line never joins a line of another quote depth
        current_depth = depth
        soft = line.endswith(" ") and line != "-- "
        if soft and delsp:
            line = line[:-1]
        current.append(line)
        if not soft:
            finish()
    if current:
        finish()
    return "\n".join(out)


def _outer_texts(message: Message) -> list[str]:
    """The text/plain parts of a mail that are not attachments nor inside a forwarded mail."""
    texts: list[str] = []

    def visit(part: Message) -> None:
        if part.get_content_type() == "message/rfc822":
            return
        if part.is_multipart():
            for child in part.get_payload():
                if isinstance(child, Message):
                    visit(child)
        elif (
            part.get_content_type() == "text/plain"
            and part.get_content_disposition() != "attachment"
        ):
            texts.append(_decode_part(part))

    visit(message)
    return [t for t in texts if t]


def _first_text_part(message: Message) -> Message | None:
    """The plain-text body part (not an attachment), if any."""
    for part in message.walk():
        if (
            part.get_content_type() == "text/plain"
            and part.get_content_disposition() != "attachment"
        ):
            return part
    return None


def _decode_part(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            return ""
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    except (LookupError, ValueError):
        return ""


def _attachment_bytes(item: dict[str, object]) -> bytes:
    import base64

    payload = item.get("payload") or ""
    if item.get("binary"):
        try:
            return base64.b64decode(str(payload))
        except ValueError:
            return str(payload).encode("utf-8", "replace")
    return str(payload).encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
