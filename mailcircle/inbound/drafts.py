"""Drafts: a member's mail to the circle's address that is new work (not a reply to the
circle's mail, not an away message, not the same words again) is taken into the queue
and acknowledged, with its place in line and when the next round starts."""

from __future__ import annotations

from mailcircle.circle import assignments, profile, rounds, submissions
from mailcircle.circle.assign import held_back_members
from mailcircle.circle.members import Member
from mailcircle.errors import Duplicate, Hold, Refuse
from mailcircle.inbound.docx import AttachmentRefused, docx_text
from mailcircle.inbound.job import Job
from mailcircle.inbound.parse import Mail, parse
from mailcircle.inbound.stage import Stage
from mailcircle.outbound import compose

TEXT_ATTACHMENT_SUFFIXES = (".txt", ".md", ".markdown")


def read(raw: bytes) -> Mail:
    """Parse a spooled mail and read an attached draft once (a .docx is slow to read);
    outside any transaction. A Hold when its MIME cannot be read at all."""
    try:
        mail = parse(raw)
    except RecursionError:
        raise Hold(
            "its MIME parts are nested too deeply to be read; kept for a moderator"
        ) from None
    try:
        draft_text(mail)  # a .docx is read here once; take_draft finds it read
    except AttachmentRefused:
        pass  # take_draft meets it again, and the author is told
    return mail


class Drafts(Stage):
    def take(self, job: Job, member: Member) -> str:
        """A draft from ``member``: queued and acknowledged (composed before the writes)."""
        mail, circle = job.mail, job.circle
        if self.senders.sounds_automatic(job, member):
            raise self.senders.looping(job, member, "an away message right after our mail")
        if self.senders.repeated(job, member):
            raise self.senders.looping(job, member, "the same words as their mail earlier today")
        self.senders.require(job, member, "a draft")
        draft = submissions.read_draft(mail.subject, draft_text(mail))
        if not draft.body and not mail.attachments:
            raise Refuse(
                f"a mail from {member.email} with no draft in it",
                template="empty_draft",
                context=compose.EmptyDraft(
                    member_name=member.greeting_name,
                    circle_name=circle.name,
                    circle_address=circle.address,
                    subject=compose.short_subject(mail.subject),
                    help_address=circle.action_address("help"),
                ),
            )
        message_id = mail.message_id or job.spooled.dedupe_key
        earlier = submissions.find_by_message_id(self.db, circle.id, message_id)
        if earlier is not None:
            raise Duplicate(f"already submitted as submission #{earlier['id']}")
        # Everything read and composed first: the write lock is taken by the writes below.
        now = self.clock.now()
        config = circle.config
        waiting = held_back_members(
            assignments.history(self.db, circle, reviewer_id=member.id),
            assignments.round_settings(circle),
        )
        ack = compose.SubmissionAck(
            member_name=member.greeting_name,
            circle_name=circle.name,
            title=draft.title,
            word_count=draft.word_count,
            asks=draft.asks,
            queue_position=submissions.next_queue_position(self.db, circle.id),
            next_round=profile.local_text(rounds.next_round_start(now, config), member, year=True),
            help_address=circle.action_address("help"),
            max_words=config.max_words,
            too_long=draft.word_count > config.max_words,
            held_back=member.id in waiting,
            participation_needed=config.participation_needed,
            participation_window=config.participation_window,
        )
        job.send(
            self.composer.compose(circle, "submission_ack", ack, to=member.email, answering=mail),
            "submission_ack",
        )
        files = submissions.files_in(job.spooled.raw)
        self.senders.remember_words(job, member)
        submission_id = submissions.create(
            self.db,
            circle_id=circle.id,
            member_id=member.id,
            spool_id=job.spooled.id,
            message_id=message_id,
            thread=mail.thread,
            draft=draft,
            now=now,
            files=files,
        )
        return f"draft {draft.title!r} from {member.email} queued as submission #{submission_id}"


def draft_text(mail: Mail) -> str:
    """The draft: the mail's text, else the first attached .txt, .md or .docx file's text."""
    if mail.text.strip():
        return mail.text
    for attachment in mail.attachments:
        name = attachment.filename.lower()
        if name.endswith(TEXT_ATTACHMENT_SUFFIXES):
            return attachment.payload.decode("utf-8", "replace").replace("\r\n", "\n")
        if name.endswith(".docx"):
            return docx_text(attachment.payload)
    return ""
