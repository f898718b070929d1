"""Raw bytes -> a plain ``Mail`` object, through mail-parser.

mail-parser never raises, even on garbage, so what it returns is checked here; the rest of
mailcircle only ever sees ``Mail``. Known traps handled: ``.body`` glues the plain and HTML
parts together (we read ``text_plain`` and fall back to the HTML as text), and a missing
Message-ID comes back as ''.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from email.header import Header, decode_header, make_header
from email.message import Message

import mailparser

from mailcircle import addresses


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    payload: bytes


@dataclass(frozen=True)
class Mail:
    message_id: str
    from_name: str
    from_addr: str
    subject: str
    text: str  # the readable body: the plain part, else the HTML part as text
    html: str
    attachments: tuple[Attachment, ...] = ()
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    headers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # lower-case names
    defects: tuple[str, ...] = ()

    def header(self, name: str) -> str:
        """The first value of a header, '' when absent."""
        values = self.headers.get(name.lower(), ())
        return values[0] if values else ""

    @property
    def thread(self) -> tuple[str, ...]:
        """The References to give a reply to this mail: its own chain, then itself."""
        chain = list(self.references) or ([self.in_reply_to] if self.in_reply_to else [])
        return tuple(chain + ([self.message_id] if self.message_id else []))


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
    except Exception:  # an undecodable encoded-word: keep it as it came
        pass
    return " ".join(text.split())


def _headers(message: Message) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for name, value in message.items():
        found.setdefault(name.lower(), []).append(_header_text(value))
    return {name: tuple(values) for name, values in found.items()}


class _TextFromHTML:
    """Turn an HTML body into readable text, keeping line breaks (poems arrive as HTML too)."""

    _PARA = re.compile(r"<\s*/\s*p\s*>", re.I)
    _BREAK = re.compile(r"<\s*(br|/div|/li|/h[1-6]|/tr|/blockquote)\b[^>]*>", re.I)
    _DROP = re.compile(r"<\s*(script|style|head)\b.*?<\s*/\s*\1\s*>", re.I | re.S)
    _TAG = re.compile(r"<[^>]*>")

    _QUOTE = re.compile(r"<\s*blockquote\b[^>]*>(.*?)<\s*/\s*blockquote\s*>", re.I | re.S)

    @classmethod
    def convert(cls, markup: str) -> str:
        text = cls._DROP.sub("", markup)
        text = re.sub(r"\s*\n\s*", " ", text)  # source line breaks are not breaks in HTML
        # A quoted passage (<blockquote>) reads as "> " lines, as in a plain-text reply.
        text = cls._QUOTE.sub(
            lambda m: (
                "<br>"
                + "<br>".join("> " + line for line in cls.convert(m.group(1)).split("\n"))
                + "<br>"
            ),
            text,
        )
        text = cls._PARA.sub("\n\n", text)
        text = cls._BREAK.sub("\n", text)
        text = html.unescape(cls._TAG.sub("", text)).replace("\xa0", " ")
        return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def _clean(text: str) -> str:
    """No control characters in a value that may reach a header (CR, LF, NUL, other C0)."""
    if text.isprintable():
        return text
    return " ".join("".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in text).split())


def _from_header(message: Message) -> tuple[str, str]:
    """(display name, address) of the From: header, read as mail clients and DMARC read it:
    the address comes from the header as written, before any encoded word in the display
    name is decoded (so ``=?utf-8?q?ben=40example.net?= <eve@attacker.test>`` is eve's)."""
    raw = message.get("from")
    if raw is None:
        return "", ""
    if isinstance(raw, Header):  # raw 8-bit bytes: the address part is ASCII anyway
        raw = str(raw)
    value = str(raw).replace("\r", " ").replace("\n", " ")
    angle = _ANGLE_ADDR.search(value)
    if angle:  # "ben@example.net <eve@attacker.test>" is eve's, as clients and DMARC read it
        name = value[: angle.start()].strip().strip('"')
        return _clean(_header_text(name)), addresses.normalize(angle.group(1))
    name, address = addresses.first_address(value)
    return _clean(_header_text(name)), address


_ANGLE_ADDR = re.compile(r"<\s*([^<>\s@]+@[^<>\s@]+)\s*>")


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
    if body_part is not None and body_part.get_param("format", "").lower() == "flowed":
        delsp = str(body_part.get_param("delsp", "no")).lower() == "yes"
        plain = unflow(plain, delsp=delsp)
    text = plain if plain.strip() else _TextFromHTML.convert(html_text) if html_text else ""
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

    A line ending in a space continues on the next line (with DelSp=yes that space goes);
    every other line break is hard and is kept, as are blank lines and indents, so a poem
    sent from Thunderbird or Apple Mail comes out exactly as its author typed it.
    """
    out: list[str] = []
    current: str | None = None
    for raw_line in text.split("\n"):
        depth = len(raw_line) - len(raw_line.lstrip(">"))
        line = raw_line[depth:]
        if line.startswith(" "):  # space-stuffed
            line = line[1:]
        soft = line.endswith(" ") and line != "-- "
        if soft and delsp:
            line = line[:-1]
        current = (current or "") + line if current is not None else (">" * depth) + line
        if not soft:
            out.append(current)
            current = None
    if current is not None:
        out.append(current)
    return "\n".join(out)


def _outer_texts(message: Message) -> list[str]:
    """The text/plain parts of a mail that are not attachments nor inside a forwarded mail."""
    texts: list[str] = []

    def visit(part: Message) -> None:
        if part.get_content_type() == "message/rfc822":
            return
        if part.is_multipart():
            for child in part.get_payload():  # type: ignore[union-attr]
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
