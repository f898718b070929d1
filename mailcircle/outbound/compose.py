"""Every mail the circle sends is rendered here, from a Jinja template in ``templates/``.

A template is a text file whose first line is ``Subject: ...``, then a blank line, then the
body. Its context is the documented dataclass registered for it in ``CONTEXTS``; a test
checks that each template uses exactly the fields its dataclass declares.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from importlib import resources
from pathlib import Path

import jinja2

from mailcircle.circle.circles import Circle
from mailcircle.clock import Clock
from mailcircle.errors import MailcircleError
from mailcircle.inbound.parse import Mail

# --- Template contexts -------------------------------------------------------------------


@dataclass(frozen=True)
class SubmissionAck:
    """submission_ack.txt: a member's draft is queued for the next round."""

    member_name: str  # what to call the author
    circle_name: str
    title: str  # the draft's title, from the subject
    word_count: int
    asks: str  # the author's questions for reviewers, '' if none
    queue_position: int  # 1 = next in line
    next_round: str  # when the next round starts, in words
    help_address: str  # poets+help@...


@dataclass(frozen=True)
class NotAMember:
    """not_a_member.txt: a draft came from an address that is not a member."""

    sender_address: str
    circle_name: str
    circle_address: str
    subject: str


@dataclass(frozen=True)
class EmptyDraft:
    """empty_draft.txt: a member's mail to the circle had no draft in it."""

    member_name: str
    circle_name: str
    circle_address: str
    subject: str
    help_address: str


@dataclass(frozen=True)
class ProcessingFailed:
    """processing_failed.txt: the circle could not process a mail; it is kept for a moderator."""

    circle_name: str
    subject: str
    help_address: str


CONTEXTS: dict[str, type] = {
    "processing_failed": ProcessingFailed,
    "submission_ack": SubmissionAck,
    "not_a_member": NotAMember,
    "empty_draft": EmptyDraft,
}


def default_templates_dir() -> Path:
    """templates/ inside the installed package, or at the top of a source checkout."""
    packaged = Path(str(resources.files("mailcircle"))) / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "templates"


class Composer:
    """Renders templates into complete EmailMessages, From: the circle, threaded."""

    def __init__(self, clock: Clock, templates_dir: Path | None = None) -> None:
        self.clock = clock
        self.templates_dir = templates_dir or default_templates_dir()
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self.templates_dir)),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(self, name: str, context: object) -> tuple[str, str]:
        """(subject, body) of template ``name`` rendered with its context dataclass."""
        expected = CONTEXTS.get(name)
        if expected is None or not isinstance(context, expected):
            raise MailcircleError(f"template {name} needs a {expected} context, got {context!r}")
        try:
            text = self.env.get_template(f"{name}.txt").render(asdict(context))  # type: ignore[call-overload]
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
    ) -> EmailMessage:
        subject, body = self.render(name, context)
        msg = EmailMessage()
        msg["From"] = formataddr((circle.name, circle.address))
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = format_datetime(self.clock.now())
        msg["Message-ID"] = f"<{name}.{secrets.token_hex(10)}@{circle.domain}>"
        if answering is not None and answering.message_id:
            msg["In-Reply-To"] = answering.message_id
            msg["References"] = " ".join(answering.thread)
        if automatic:
            # RFC 3834: answers to a mail are auto-replied; nothing should answer them back.
            msg["Auto-Submitted"] = "auto-replied" if answering else "auto-generated"
        label = circle.name.replace("\\", "").replace('"', "")
        msg["List-Id"] = f'"{label}" <{circle.list_id}>'
        msg["List-Post"] = f"<mailto:{circle.address}>"
        msg["List-Help"] = f"<mailto:{circle.action_address('help')}>"
        msg["List-Unsubscribe"] = f"<mailto:{circle.action_address('leave')}>"
        msg.set_content(body)
        return msg
