"""Every mail the circle sends is rendered here, from a Jinja template in ``templates/``.

A template is a text file whose first line is ``Subject: ...``, then a blank line, then the
body. Its context is the documented dataclass registered for it in ``CONTEXTS``; a test
checks that each template uses exactly the fields its dataclass declares.
"""

from __future__ import annotations

import base64
import secrets
import unicodedata
from dataclasses import dataclass
from email import encoders
from email.charset import QP, Charset
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import jinja2

from mailcircle.clock import Clock
from mailcircle.errors import MailcircleError
from mailcircle.mail import Mail
from mailcircle.text import SUBJECT_ECHO as SUBJECT_ECHO  # re-exported for callers
from mailcircle.text import clean
from mailcircle.text import short_subject as short_subject  # re-exported for callers

if TYPE_CHECKING:  # a type only: sending never imports the circle layer
    from mailcircle.circle.circles import Circle

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
    max_words: int  # the circle's word limit
    too_long: bool  # the draft is over max_words and will wait
    held_back: bool  # the author takes without giving: their drafts wait until they catch up
    participation_needed: int  # e.g. critiqued in 3 ...
    participation_window: int  # ... of the last 4 rounds


@dataclass(frozen=True)
class Assignment:
    """assignment.txt: a member is asked to critique a draft (or to step in as a backup)."""

    reviewer_name: str
    author_name: str
    circle_name: str
    title: str
    word_count: int
    asks: str  # the author's questions, '' if none
    draft: str  # the draft itself, exactly as written
    due: str  # the due date in the reviewer's time zone, in words
    backup: bool  # standing in for a reviewer who could not
    attachments: str  # names of attached files, comma separated, '' if none


@dataclass(frozen=True)
class Reminder:
    """reminder.txt: an open assignment is due soon."""

    reviewer_name: str
    author_name: str
    circle_name: str
    title: str
    due: str


@dataclass(frozen=True)
class CritiqueDelivery:
    """critique_delivery.txt: a critique of the author's draft, relayed by the circle."""

    author_name: str
    reviewer_name: str
    circle_name: str
    title: str
    critique: str  # the reviewer's own words, quotes and signature trimmed
    late: bool


@dataclass(frozen=True)
class CritiqueReceipt:
    """critique_receipt.txt: the reviewer's critique reached the author."""

    reviewer_name: str
    author_name: str
    circle_name: str
    title: str
    late: bool


@dataclass(frozen=True)
class ModeratorNotice:
    """moderator_notice.txt: something the circle's moderators should know."""

    moderator_name: str
    circle_name: str
    topic: str  # one line, used as the subject
    details: str  # what happened and what they might do


@dataclass(frozen=True)
class NotAMember:
    """not_a_member.txt: a draft or command came from an address that is not a member."""

    sender_address: str
    circle_name: str
    circle_address: str
    subject: str
    join_address: str


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


@dataclass(frozen=True)
class Help:
    """help.txt: what the circle's addresses do (the answer to +help and to unknown words)."""

    circle_name: str
    circle_address: str
    request_address: str  # poets+request@: commands in the subject
    join_address: str
    not_understood: str  # the word we did not understand, '' when +help was asked for
    talk_address: str = ""  # poets+talk@, '' to leave the talk commands out


@dataclass(frozen=True)
class JoinConfirm:
    """join_confirm.txt: someone asked to join; only the owner of the address can confirm."""

    circle_name: str
    email: str
    confirm_address: str


@dataclass(frozen=True)
class Welcome:
    """welcome.txt: a new member is in."""

    member_name: str
    circle_name: str
    circle_address: str
    help_address: str
    next_round: str


@dataclass(frozen=True)
class LeaveConfirm:
    """leave_confirm.txt: a member asked to leave; they confirm by replying."""

    member_name: str
    circle_name: str
    confirm_address: str


@dataclass(frozen=True)
class Goodbye:
    """goodbye.txt: a member has left."""

    member_name: str
    circle_name: str
    join_address: str


@dataclass(frozen=True)
class PauseAnswer:
    """pause_answer.txt: a member paused or resumed."""

    member_name: str
    circle_name: str
    paused: bool  # True: now paused; False: back in the rotation
    passed_on: int  # open assignments handed to backups on pausing
    other_address: str  # +resume when paused, +pause when resumed


@dataclass(frozen=True)
class StatusAnswer:
    """status.txt: a member's open assignments, queued drafts and give/take standing."""

    member_name: str
    circle_name: str
    member_status: str  # active, paused
    assignments: str  # one line each, '' if none
    drafts: str  # one line each, '' if none
    held_back: bool
    participation_needed: int
    participation_window: int
    next_round: str
    talk: str = "each"  # how they read the circle's talk: each, digest, off
    talk_address: str = ""  # poets+talk@
    timezone: str = "UTC"  # the member's own time zone
    zone_offer: str = ""  # a sentence offering the zone their mail's Date: suggests, '' if none


@dataclass(frozen=True)
class RelayedReply:
    """relayed_reply.txt: an author's answer to a critique, passed to its reviewer."""

    reviewer_name: str
    author_name: str
    circle_name: str
    title: str
    words: str  # the author's own words


@dataclass(frozen=True)
class Digest:
    """digest.txt: a member's weekly digest (with digest.html). Never quotes a draft."""

    member_name: str
    circle_name: str
    week: str  # "the week to Sunday 8 March"
    drafts_out: str  # one line per draft of the latest round: title, author, words, readers
    critiques_delivered: str  # one line per critique delivered this week
    your_assignments: str  # one line per open assignment with its due date
    given: int  # critiques this member gave in recent rounds
    received: int  # critiques this member received in recent rounds
    held_back: bool  # their drafts wait until they catch up
    participation_needed: int
    participation_window: int
    thanks_received: int  # authors who answered this member's critiques this week
    generous: str  # members who stepped in as backups this week, '' if none
    next_round: str
    engagement: str  # the next engagement day and its topic, '' if none
    rsvp_address: str  # where to say yes to it
    pause_address: str
    leave_address: str
    digest_off_address: str
    conversations: str = ""  # "Conversations this week", by the member's talk choice; ''
    milestones: str = ""  # one line per milestone worth a smile this week, '' if none
    engagement_day: str = ""  # what happened on an engagement day this week, '' if none
    talk_address: str = ""  # poets+talk@


@dataclass(frozen=True)
class RsvpAnswer:
    """rsvp_answer.txt: a member said yes or no to an engagement day."""

    member_name: str
    circle_name: str
    day: str
    topic: str
    coming: bool


@dataclass(frozen=True)
class Agenda:
    """agenda.txt: the day before an engagement day, for those who said yes."""

    member_name: str
    circle_name: str
    day: str
    topic: str
    drafts: str  # one line per draft to discuss, with the author's questions


@dataclass(frozen=True)
class DigestAnswer:
    """digest_answer.txt: a member turned their weekly digest on or off."""

    member_name: str
    circle_name: str
    on: bool
    other_address: str  # +digest-off when on, +digest-on when off


@dataclass(frozen=True)
class ConfirmSender:
    """confirm_sender.txt: mail from a member's address could not be verified; did they send it?"""

    member_name: str
    circle_name: str
    what: str  # "a draft", "a critique", "a pause" ...
    subject: str  # the held mail's subject, shortened
    confirm_address: str  # poets+confirm-TOKEN@ (also the Reply-To)


@dataclass(frozen=True)
class NoteAnswer:
    """note_answer.txt: a reply to one of our mails is kept as a note; where things go."""

    member_name: str
    circle_name: str
    answered: str  # "the acknowledgement of your draft" ...
    circle_address: str
    help_address: str


@dataclass(frozen=True)
class CritiqueClosed:
    """critique_closed.txt: a critique came for an assignment that no longer takes one."""

    reviewer_name: str
    circle_name: str
    title: str
    reason: str  # "the work passed to another reviewer" ...


@dataclass(frozen=True)
class LoopPaused:
    """loop_paused.txt: a member's mailbox kept answering the circle's mail; paused."""

    member_name: str
    circle_name: str
    count: int  # automatic answers in a day
    resume_address: str  # poets+resume@


CONTEXTS: dict[str, type] = {
    "digest": Digest,
    "digest_answer": DigestAnswer,
    "rsvp_answer": RsvpAnswer,
    "agenda": Agenda,
    "help": Help,
    "join_confirm": JoinConfirm,
    "welcome": Welcome,
    "leave_confirm": LeaveConfirm,
    "goodbye": Goodbye,
    "pause_answer": PauseAnswer,
    "status": StatusAnswer,
    "relayed_reply": RelayedReply,
    "assignment": Assignment,
    "reminder": Reminder,
    "critique_delivery": CritiqueDelivery,
    "critique_receipt": CritiqueReceipt,
    "moderator_notice": ModeratorNotice,
    "processing_failed": ProcessingFailed,
    "submission_ack": SubmissionAck,
    "not_a_member": NotAMember,
    "empty_draft": EmptyDraft,
    "confirm_sender": ConfirmSender,
    "note_answer": NoteAnswer,
    "critique_closed": CritiqueClosed,
    "loop_paused": LoopPaused,
}

# --- The circle's talk, engagement days and members' own settings ------------------------


@dataclass(frozen=True)
class TalkPost:
    """talk_post.txt: one member's post to the circle's talk, a copy for each reader."""

    author_name: str
    circle_name: str
    subject: str  # the author's subject, tagged once: "Re: [Poets] ..."
    body: str  # the author's words, exactly as written
    engagement_topic: str  # the engagement day this post is part of, '' if none
    talk_address: str  # poets+talk@: replies go to everyone
    digest_address: str  # poets+talk-digest@: read the talk in the digest instead
    off_address: str  # poets+talk-off@
    attachments: str  # names of attached files, comma separated, '' if none


@dataclass(frozen=True)
class TalkRefused:
    """talk_refused.txt: a member's post to the talk was not sent on, and why."""

    member_name: str
    circle_name: str
    subject: str
    reason: str  # one or two sentences: what to do instead
    circle_address: str  # where drafts go
    talk_address: str


@dataclass(frozen=True)
class TalkHeld:
    """talk_held.txt: a post to the talk from an address that is not a member waits."""

    sender_address: str
    circle_name: str
    subject: str
    join_address: str


@dataclass(frozen=True)
class TalkChoice:
    """talk_choice.txt: a member chose how to read the circle's talk."""

    member_name: str
    circle_name: str
    choice: str  # each, digest, off
    own_copies: bool  # they get a copy of their own posts
    digest_turned_on: bool  # choosing the digest turned their weekly digest back on
    talk_address: str
    each_address: str
    digest_address: str
    off_address: str
    self_address: str  # +talk-self when off, +talk-noself when on
    zone_offer: str  # a sentence offering the zone their mail's Date: suggests, '' if none


@dataclass(frozen=True)
class MemberSetting:
    """member_setting.txt: a member set (or tried to set) their time zone or name."""

    member_name: str
    circle_name: str
    setting: str  # "time zone" or "name"
    value: str  # the new value, or what they sent when it could not be used
    problem: str  # why it could not be used, '' when it was set
    local_now: str  # the time now in their zone, in words ('' for a name)
    command_address: str  # the address to try again


@dataclass(frozen=True)
class EngagementKickoff:
    """engagement_kickoff.txt: the morning of an engagement day, for those who said yes."""

    member_name: str
    circle_name: str
    day: str
    topic: str
    agenda: str  # one line per item moderators added, '' if none
    drafts: str  # one line per draft of the last round, with its author's questions
    talk_address: str  # where the day's conversation happens


@dataclass(frozen=True)
class AgendaAnswer:
    """agenda_answer.txt: a moderator added an item to an engagement day (or could not)."""

    member_name: str
    circle_name: str
    item: str
    day: str  # the engagement day, in words; '' if none is planned
    topic: str
    problem: str  # why it was not added, '' when it was


CONTEXTS.update(
    {
        "talk_post": TalkPost,
        "talk_refused": TalkRefused,
        "talk_held": TalkHeld,
        "talk_choice": TalkChoice,
        "member_setting": MemberSetting,
        "engagement_kickoff": EngagementKickoff,
        "agenda_answer": AgendaAnswer,
    }
)


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


def _text_part(text: str, subtype: str) -> MIMEText:
    """A text part, quoted-printable when it is not plain ASCII (readable, line breaks kept)."""
    if text.isascii() and all(len(line) < 990 for line in text.split("\n")):
        return MIMEText(text, subtype, "us-ascii")
    charset = Charset("utf-8")
    charset.body_encoding = QP
    return MIMEText(text, subtype, charset)  # type: ignore[arg-type]


def sample_context(name: str) -> object:
    """A context for template ``name`` filled with sample values (for previews and tests)."""
    import typing

    context_type = CONTEXTS[name]
    hints = typing.get_type_hints(context_type)
    samples = {
        field: f"<{field}>" if kind is str else 3 if kind is int else True
        for field, kind in hints.items()
    }
    return context_type(**samples)
