"""A received mail as the rest of mailcircle sees it: plain data, no parser attached.

``inbound/parse.py`` builds these from raw bytes; sending (``outbound/compose.py``) reads
them to answer a mail. Both depend on this module, never on each other.
"""

from __future__ import annotations

import email
from dataclasses import dataclass, field
from email.header import Header, decode_header, make_header
from email.message import Message
from email.policy import compat32


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


def attachments_of(raw: bytes) -> tuple[Attachment, ...]:
    """The attached files of a raw mail, read with the standard library alone.

    The same parts ``inbound/parse.py`` reports as attachments: a part with a file name, a
    non-text part with a Content-ID, an RTF part, or one marked ``attachment``; payloads
    decoded from their transfer encoding. A part without a name gets '' (callers name it).
    For the circle reading a stored draft back without depending on the receiving side.
    """
    message = email.message_from_bytes(raw, policy=compat32)
    found = []
    for part in message.walk():
        disposition = (part.get_content_disposition() or "").lower()
        if part.is_multipart() and disposition != "attachment":
            continue
        filename = _filename(part)
        content_id = str(part.get("content-id") or "")
        subtype = part.get_content_subtype()
        if not filename:
            if content_id and subtype not in ("html", "plain"):
                filename = content_id
            elif not (subtype == "rtf" or disposition == "attachment"):
                continue
        if part.is_multipart():
            inner = part.get_payload()
            text = "".join(m.as_string() for m in inner if isinstance(m, Message))
            payload = text.encode("utf-8", "surrogateescape")
        else:
            decoded = part.get_payload(decode=True)
            payload = decoded if isinstance(decoded, bytes) else b""
        found.append(Attachment(filename, part.get_content_type(), payload))
    return tuple(found)


def _filename(part: Message) -> str:
    name = part.get_filename() or ""
    if "\ufffd" not in name:
        return _decoded(name)
    # Raw 8-bit bytes in the header: compat32 lost them; read the header's bytes as UTF-8.
    for key, param in (("content-disposition", "filename"), ("content-type", "name")):
        value = part.get(key)
        if not isinstance(value, Header):
            continue
        text = "".join(
            chunk.decode("utf-8", "replace") if isinstance(chunk, bytes) else chunk
            for chunk, _ in decode_header(value)
        )
        probe = Message()
        probe[key] = text
        found = probe.get_param(param, header=key)
        if isinstance(found, str) and found:
            return found
    return _decoded(name)


def _decoded(value: str) -> str:
    """A header parameter as text: raw 8-bit bytes read as UTF-8, RFC 2047 words decoded."""
    try:
        raw = value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return value  # already text (an RFC 2231 parameter, decoded)
    if not raw.isascii():
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # an undecodable encoded-word: keep it as it came
        return value
