"""An attached .docx draft as plain text, refused before expansion when it is too big.

A .docx is a zip file; python-docx expands it whole. So the zip's own directory is read
first: a file whose members expand beyond ``MAX_EXPANDED_BYTES`` in all, or whose document
is beyond ``MAX_DOCUMENT_BYTES`` or holds more than ``MAX_PARAGRAPHS`` paragraphs (counted
while streaming it, never holding it whole), is refused with a sentence the author reads.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from collections import OrderedDict

from mailcircle.errors import MailcircleError

MAX_EXPANDED_BYTES = 64 * 1024 * 1024  # every member of the zip, images included
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024  # word/document.xml: the text and its markup
MAX_PARAGRAPHS = 50_000  # a long novel chapter has a few thousand
DOCUMENT = "word/document.xml"
_CHUNK = 1024 * 1024
_PARAGRAPH = re.compile(rb"<w:p[ >/]")


class AttachmentRefused(MailcircleError):
    """An attachment is too big to read; ``str(err)`` tells the author why."""


_read: OrderedDict[bytes, str | AttachmentRefused] = OrderedDict()  # the last few, by hash


def docx_text(payload: bytes) -> str:
    """The paragraphs of a .docx file as plain text ('' if it cannot be read).

    Raises AttachmentRefused when it is too big to read. The worker reads a mail's
    attachment before its write transaction and again inside it, so the last few
    answers are kept (by the payload's hash).
    """
    key = hashlib.sha256(payload).digest()
    if key in _read:
        found = _read[key]
        if isinstance(found, AttachmentRefused):
            raise found
        return found
    try:
        text: str | AttachmentRefused = _read_docx(payload)
    except AttachmentRefused as refused:
        text = refused
    _read[key] = text
    while len(_read) > 4:
        _read.popitem(last=False)
    if isinstance(text, AttachmentRefused):
        raise text
    return text


def check_size(payload: bytes) -> None:
    """Raise AttachmentRefused if the .docx would expand beyond the limits."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
    except (zipfile.BadZipFile, ValueError, OSError):
        return  # not a zip: python-docx will not read it either
    with archive:
        members = archive.infolist()
        expanded = sum(member.file_size for member in members)
        if expanded > MAX_EXPANDED_BYTES:
            raise AttachmentRefused(
                f"the attached .docx file expands to {_mb(expanded)}; the circle reads .docx"
                f" files up to {_mb(MAX_EXPANDED_BYTES)} (send the text in the message,"
                " or as a .txt file)"
            )
        try:
            document = archive.getinfo(DOCUMENT)
        except KeyError:
            return
        if document.file_size > MAX_DOCUMENT_BYTES:
            raise AttachmentRefused(
                f"the text of the attached .docx file is {_mb(document.file_size)}; the circle"
                f" reads .docx text up to {_mb(MAX_DOCUMENT_BYTES)} (send the text in the"
                " message, or as a .txt file)"
            )
        _count_paragraphs(archive, document)


def _count_paragraphs(archive: zipfile.ZipFile, document: zipfile.ZipInfo) -> None:
    """Stream the document and stop at MAX_PARAGRAPHS + 1 paragraph starts."""
    count = 0
    tail = b""
    read = 0
    try:
        with archive.open(document) as stream:
            while chunk := stream.read(_CHUNK):
                read += len(chunk)
                if read > MAX_DOCUMENT_BYTES:  # the directory lied about the size
                    raise AttachmentRefused(
                        f"the text of the attached .docx file is over"
                        f" {_mb(MAX_DOCUMENT_BYTES)}; the circle reads .docx text up to"
                        f" {_mb(MAX_DOCUMENT_BYTES)}"
                    )
                # A tag cut by the chunk's end is whole in the next window, and a match is
                # 5 bytes long, so none is counted twice from the 4 bytes carried over.
                window = tail + chunk
                count += len(_PARAGRAPH.findall(window))
                tail = window[-4:]
                if count > MAX_PARAGRAPHS:
                    raise AttachmentRefused(
                        f"the attached .docx file has more than {MAX_PARAGRAPHS:,} paragraphs;"
                        " the circle reads .docx files up to that (send the text in the"
                        " message, or as a .txt file)"
                    )
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError):
        return  # damaged: python-docx will give up on it in its own way


def _read_docx(payload: bytes) -> str:
    check_size(payload)
    import docx  # python-docx

    try:
        document = docx.Document(io.BytesIO(payload))
    except Exception:  # not really a .docx, or damaged: the attachment is still forwarded
        return ""
    return "\n".join(paragraph.text for paragraph in document.paragraphs)


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB" if size >= 1024 * 1024 else f"{size:,} bytes"
