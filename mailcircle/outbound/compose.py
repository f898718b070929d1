"""Every mail the circle sends is rendered here, from a Jinja template in ``templates/``.

A template is a text file whose first line is ``Subject: ...``, then a blank line, then the
body. Its context is the documented dataclass registered for it in ``CONTEXTS``; a test
checks that each template uses exactly the fields its dataclass declares.
"""

from __future__ import annotations

import base64
import secrets
import unicodedata
from email import encoders, quoprimime
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.utils import format_datetime, formataddr
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import jinja2

from mailcircle.clock import Clock
from mailcircle.errors import MailcircleError
from mailcircle.mail import Mail
from mailcircle.outbound.contexts import *  # noqa: F403 (re-exported: callers name compose.Digest ...)
from mailcircle.outbound.contexts import CONTEXTS
from mailcircle.text import SUBJECT_ECHO as SUBJECT_ECHO  # re-exported for callers
from mailcircle.text import clean
from mailcircle.text import short_subject as short_subject  # re-exported for callers

if TYPE_CHECKING:  # a type only: sending never imports the circle layer
    from mailcircle.circle.circles import Circle


def default_templates_dir() -> Path:
    """templates/ inside the installed package, or at the top of a source checkout."""
    packaged = Path(str(resources.files("mailcircle"))) / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "templates"


class Composer:
    """Renders templates into complete mails, From: the circle, threaded."""

    def __init__(self, clock: Clock, templates_dir: Path | None = None) -> None:
        self.clock = clock
        self.templates_dir = templates_dir or default_templates_dir()
        self.env = self._environment(())
        self._by_folder: dict[str, jinja2.Environment] = {}

    def _environment(self, overrides: tuple[str, ...]) -> jinja2.Environment:
        folders = [*overrides, str(self.templates_dir)]
        return jinja2.Environment(
            loader=jinja2.FileSystemLoader(folders),  # the first folder holding a name wins
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def environment_for(self, circle: Circle | None) -> jinja2.Environment:
        """The templates a circle uses: its own folder's first (setting templates_dir)."""
        folder = circle.config.templates_dir if circle is not None else ""
        if not folder:
            return self.env
        if folder not in self._by_folder:
            self._by_folder[folder] = self._environment((folder,))
        return self._by_folder[folder]

    def render_html(self, name: str, context: object, circle: Circle | None = None) -> str | None:
        """The HTML part of a mail, when a ``NAME.html`` template exists (autoescaped)."""
        try:
            template = self.environment_for(circle).get_template(f"{name}.html")
        except jinja2.TemplateNotFound:
            return None
        try:
            return template.render(vars(context))
        except jinja2.TemplateError as err:
            raise MailcircleError(f"template {name}.html cannot be rendered: {err}") from err

    def render(self, name: str, context: object, circle: Circle | None = None) -> tuple[str, str]:
        """(subject, body) of template ``name`` rendered with its context dataclass."""
        expected = CONTEXTS.get(name)
        if expected is None or not isinstance(context, expected):
            raise MailcircleError(f"template {name} needs a {expected} context, got {context!r}")
        try:
            template = self.environment_for(circle).get_template(f"{name}.txt")
            text = template.render(vars(context))
        except jinja2.TemplateError as err:
            raise MailcircleError(f"template {name}.txt cannot be rendered: {err}") from err
        first, _, body = text.lstrip("\n").partition("\n")
        if not first.lower().startswith("subject:"):
            raise MailcircleError(f"template {name}.txt must start with a 'Subject:' line")
        return first.partition(":")[2].strip(), body.lstrip("\n").rstrip() + "\n"

    def compose(
        self,
        circle: Circle,
        name: str,
        context: object,
        *,
        to: str,
        answering: Mail | None = None,
        automatic: bool = True,
        on_behalf_of: str = "",
        reply_to: str = "",
        precedence: str = "",
        thread: tuple[str, ...] = (),
        attachments: tuple[tuple[str, str, bytes], ...] = (),
    ) -> Message:
        """A complete mail. ``thread`` (Message-IDs, oldest first) threads it without a Mail
        to answer; ``on_behalf_of`` relays a member's words as "Ann via Poets".

        Built with the classic (compat32) MIME classes: the modern header registry costs
        about three times as much per mail, which shows with 10,000 digests.
        """
        subject, body = self.render(name, context, circle)
        msg: Message = _text_part(body, "plain")
        html = self.render_html(name, context, circle)
        if html is not None:
            msg = MIMEMultipart(
                "alternative", _subparts=[msg, _text_part(html, "html")], boundary=_boundary()
            )
        if attachments:
            parts = [msg]
            for filename, content_type, payload in attachments:
                maintype, _, subtype = content_type.partition("/")
                part = MIMEBase(maintype or "application", subtype or "octet-stream")
                part.set_payload(payload)
                encoders.encode_base64(part)
                part.add_header("Content-Disposition", "attachment", filename=clean(filename))
                parts.append(part)
            msg = MIMEMultipart("mixed", _subparts=parts, boundary=_boundary())
        sender = f"{on_behalf_of} via {circle.name}" if on_behalf_of else circle.name
        subject = clean(subject)
        msg["From"] = display_address(clean(sender), circle.address)
        msg["To"] = to
        msg["Subject"] = header_text(subject)
        msg["Date"] = format_datetime(self.clock.now())
        msg["Message-ID"] = f"<{name}.{secrets.token_hex(10)}@{circle.domain}>"
        if not reply_to and automatic and name != "digest":
            # What a reply to this mail means: a note, never a draft or a critique.
            reply_to = circle.action_address("note")
        if reply_to:
            msg["Reply-To"] = reply_to
        chain = answering.thread if answering is not None and answering.message_id else thread
        if chain:
            msg["In-Reply-To"] = chain[-1]
            msg["References"] = " ".join(chain)
        if precedence:
            msg["Precedence"] = precedence
        if automatic:
            # RFC 3834: answers to a mail are auto-replied; nothing should answer them back.
            msg["Auto-Submitted"] = "auto-replied" if answering else "auto-generated"
        msg["List-Id"] = list_id(circle.name, circle.list_id)
        msg["List-Post"] = f"<mailto:{circle.address}>"
        msg["List-Help"] = f"<mailto:{circle.action_address('help')}>"
        leave = f"<mailto:{circle.action_address('leave')}?subject={UNSUBSCRIBE_SUBJECT}>"
        web = unsubscribe_url(circle.config.unsubscribe_url, to)
        if web:
            # RFC 8058 one-click: only with an HTTPS URL, which the operator's endpoint
            # answers (a POST unsubscribes at once; a link scanner's GET must not).
            msg["List-Unsubscribe"] = f"<{web}>, {leave}"
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        else:
            msg["List-Unsubscribe"] = leave
        return msg


# The subject List-Unsubscribe's mailto asks a mail client to send (the +leave address acts
# on the address, whatever the subject: at once for a verified member, else confirmed).
UNSUBSCRIBE_SUBJECT = "unsubscribe"

# RFC 2047: an encoded word is at most 75 characters. Words carry at most 36 bytes of UTF-8
# (=?utf-8?b? + 48 base64 characters + ?= is 60), so a header line with one stays within 78.
_WORD_BYTES = 36


def encoded_words(text: str) -> str:
    """``text`` as RFC 2047 encoded words (base64, UTF-8) of at most 60 characters each,
    split between characters, never inside one; separated by spaces, which a reader drops."""
    words, chunk = [], b""
    for char in text:
        data = char.encode("utf-8")
        if len(chunk) + len(data) > _WORD_BYTES:
            words.append(chunk)
            chunk = b""
        chunk += data
    words.append(chunk)
    return " ".join(f"=?utf-8?b?{base64.b64encode(word).decode('ascii')}?=" for word in words)


def header_text(text: str) -> str:
    """Unstructured header text (a subject): as is when plain ASCII, else encoded words."""
    if text.isascii() and "=?" not in text:
        return text
    return encoded_words(text)


def display_address(name: str, address: str) -> str:
    """``Name <address>``: an ASCII name quoted where it must be, any other encoded."""
    if name.isascii() and "=?" not in name:
        return formataddr((name, address))
    return f"{encoded_words(name)} <{address}>"


def list_id(name: str, identifier: str) -> str:
    """RFC 2919 List-Id. Its phrase may not hold an encoded word inside quotes (RFC 2047 §5),
    so it is the name in plain ASCII (accents dropped), or left out when nothing is left."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    phrase = " ".join("".join(c for c in ascii_name if c.isprintable() and c not in '"\\').split())
    return f'"{phrase}" <{identifier}>' if any(c.isalnum() for c in phrase) else f"<{identifier}>"


def unsubscribe_url(template: str, recipient: str) -> str:
    """The circle's one-click unsubscribe URL for ``recipient`` ({address} in the setting
    becomes the address, URL-encoded), or '' when the circle has none."""
    if not template:
        return ""
    return template.replace("{address}", quote(recipient, safe=""))


def _boundary() -> str:
    """A MIME boundary chosen here, so the generator need not search the parts for one.
    "=_" cannot occur in quoted-printable text, and the random part nowhere else."""
    return f"=_mailcircle_{secrets.token_hex(12)}"


def _text_part(text: str, subtype: str) -> Message:
    """A text part, quoted-printable when it is not plain ASCII (readable, line breaks kept).

    The same headers and bytes as ``MIMEText`` makes (a test compares them), written
    directly: MIMEText's charset and parameter handling was a third of a digest's cost.
    """
    if text.isascii() and max(map(len, text.split("\n"))) < 990:
        charset, encoding, payload = "us-ascii", "7bit", text
    else:
        charset, encoding = "utf-8", "quoted-printable"
        payload = quoprimime.body_encode(text.encode("utf-8").decode("latin-1"))
    part = Message()
    part["Content-Type"] = f'text/{subtype}; charset="{charset}"'
    part["MIME-Version"] = "1.0"
    part["Content-Transfer-Encoding"] = encoding
    part.set_payload(payload)
    return part
