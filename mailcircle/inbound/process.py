"""The worker: turns each spooled mail into a recorded outcome, one transaction per mail.

Processing is a tuple of small steps read top to bottom. A step stops a mail by raising
an ``Outcome`` (Hold, Refuse, Ignore, Unhandled, Duplicate); the last step acts and
returns the sentence recorded as the outcome. Any other exception rolls the transaction
back and leaves the mail marked ``failed`` with the error, for a moderator to retry.
"""

from __future__ import annotations

import logging
import re
import secrets
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlite_utils import Database

from mailcircle import addresses
from mailcircle.circle import assignments, circles, members, rounds, submissions
from mailcircle.circle.assign import held_back_members
from mailcircle.circle.circles import Circle
from mailcircle.clock import Clock, iso, parse_iso
from mailcircle.db import transaction
from mailcircle.errors import Duplicate, Hold, Ignore, Outcome, Refuse, Unhandled
from mailcircle.inbound import spool
from mailcircle.inbound.parse import Mail, parse
from mailcircle.inbound.reply import trim_reply
from mailcircle.inbound.route import BOUNCE, COMMAND, DRAFT, Route, automatic_reason, route
from mailcircle.inbound.spool import Spooled
from mailcircle.outbound import compose, outbox

log = logging.getLogger(__name__)

TEXT_ATTACHMENT_SUFFIXES = (".txt", ".md", ".markdown")

_OUT_OF_OFFICE = re.compile(
    r"\b(out of (the )?office|automatic reply|auto.?reply|autoreply|on vacation|away from"
    r"|abwesenheit|absence|r[ée]ponse automatique|fuera de la oficina|respuesta autom)",
    re.IGNORECASE,
)


class _Away(Exception):
    """Internal: the mail is an automatic answer to an assignment."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def out_of_office(mail: Mail) -> str:
    """Why a mail looks like an out-of-office answer by its subject ('' if it does not)."""
    if _OUT_OF_OFFICE.search(mail.subject):
        return f"its subject, {mail.subject!r}, is an out-of-office answer"
    return ""


@dataclass
class Job:
    """One spooled mail on its way through the steps; each step fills in what it learns."""

    spooled: Spooled
    mail: Mail | None = None
    circle: Circle | None = None
    route: Route | None = None
    assignment: dict[str, Any] | None = None  # set when the mail answers an assignment
    answer_to: str = ""  # who a refusal goes to; '' when nobody may be answered
    queued: list[int] = field(default_factory=list)


class Worker:
    def __init__(self, db: Database, clock: Clock, composer: compose.Composer) -> None:
        self.db = db
        self.clock = clock
        self.composer = composer
        self.steps: tuple[Callable[[Job], str | None], ...] = (
            self.parse,
            self.find_circle,
            self.skip_duplicate,
            self.decide_route,
            self.take_critique,
            self.take_draft,
        )

    # --- driving -------------------------------------------------------------------------

    def process_pending(self, limit: int = 50) -> int:
        """Process waiting mails, oldest first; returns how many were processed."""
        batch = spool.pending(self.db, limit)
        for spooled in batch:
            self.process(spooled)
        return len(batch)

    def process(self, spooled: Spooled) -> str:
        """Run the steps for one mail and record the outcome; returns the new status."""
        job = Job(spooled)
        try:
            status, outcome = self._settle(job)
        except Exception as err:  # anything unforeseen: keep the mail, show the error
            status = spool.FAILED
            outcome = f"could not be processed: {type(err).__name__}: {err}"
            error = traceback.format_exc()
            log.exception("inbound #%d failed", spooled.id)
            with transaction(self.db):
                outcome += self._apologize(job)
                spool.record(self.db, self.clock, spooled.id, status, outcome, error)
        log.info("inbound #%d %s: %s", spooled.id, status, outcome)
        return status

    def _settle(self, job: Job) -> tuple[str, str]:
        try:
            with transaction(self.db):
                outcome = self._run_steps(job)
                spool.record(self.db, self.clock, job.spooled.id, spool.DONE, outcome)
            return spool.DONE, outcome
        except Outcome as stop:  # the steps' changes are rolled back; record why instead
            job.queued.clear()
            outcome = stop.reason
            with transaction(self.db):
                if isinstance(stop, Refuse):
                    outcome += self._answer_refusal(job, stop)
                spool.record(self.db, self.clock, job.spooled.id, stop.status, outcome)
            return stop.status, outcome

    def _run_steps(self, job: Job) -> str:
        try:
            for step in self.steps:
                result = step(job)
                if result is not None:
                    return result
        except _Away as away:
            return self.away(job, away.reason)
        raise Unhandled("no step knew what to do with it")

    def _answer_refusal(self, job: Job, refusal: Refuse) -> str:
        if not job.answer_to or job.circle is None or refusal.context is None:
            return "; nobody was answered"
        message = self.composer.compose(
            job.circle, refusal.template, refusal.context, to=job.answer_to, answering=job.mail
        )
        self._queue(job, message, refusal.template)
        return f"; {job.answer_to} was told why"

    def _apologize(self, job: Job) -> str:
        """Tell the sender their mail is safe though it could not be processed (if we may)."""
        if not job.answer_to or job.circle is None or job.mail is None:
            return "; nobody was answered"
        context = compose.ProcessingFailed(
            circle_name=job.circle.name,
            subject=job.mail.subject,
            help_address=job.circle.action_address("help"),
        )
        try:
            with transaction(self.db):  # a savepoint: if the apology fails, the record stays
                message = self.composer.compose(
                    job.circle,
                    "processing_failed",
                    context,
                    to=job.answer_to,
                    answering=job.mail,
                )
                job.queued.clear()
                self._queue(job, message, "processing_failed")
        except Exception:
            log.exception("could not queue the apology for inbound #%d", job.spooled.id)
            return "; the sender could not be told"
        return f"; {job.answer_to} was told it is kept for a moderator"

    def _queue(self, job: Job, message: object, purpose: str) -> None:
        assert job.circle is not None
        job.queued.append(
            outbox.queue_for_circle(
                self.db,
                job.circle,
                message,  # type: ignore[arg-type]
                now=self.clock.now(),
                purpose=purpose,
                spool_id=job.spooled.id,
            )
        )

    # --- the steps -----------------------------------------------------------------------

    def parse(self, job: Job) -> None:
        job.mail = parse(job.spooled.raw)
        reason = automatic_reason(job.mail, job.spooled.mail_from)
        job.answer_to = "" if reason else (job.mail.from_addr or "")

    def find_circle(self, job: Job) -> None:
        circle = circles.find(self.db, job.spooled.rcpt_to)
        if circle is None:
            raise Unhandled(f"{job.spooled.rcpt_to} is no longer a circle's address")
        job.circle = circle

    def skip_duplicate(self, job: Job) -> None:
        earlier = spool.earlier_copy(self.db, job.spooled)
        if earlier is not None:
            raise Duplicate(f"the same mail as inbound #{earlier}; nothing was done again")

    def decide_route(self, job: Job) -> None:
        mail, circle = job.mail, job.circle
        assert mail is not None and circle is not None
        job.route = route(job.spooled.rcpt_to, job.spooled.mail_from)
        if job.route.kind == BOUNCE:
            raise Unhandled("a bounce or delivery report; kept for when bounces are handled")
        if job.route.kind == COMMAND and job.route.action == addresses.CRITIQUE:
            job.assignment = assignments.find_by_token(self.db, job.route.token)
            if job.assignment is None:
                raise Hold(f"the critique address token {job.route.token!r} matches no assignment")
        elif job.route.kind == DRAFT and (mail.in_reply_to or mail.references):
            # A reply whose client dropped our Reply-To still threads to the assignment.
            job.assignment = assignments.find_by_message_ids(
                self.db, (*mail.references, mail.in_reply_to)
            )
        reason = automatic_reason(mail, job.spooled.mail_from) or out_of_office(mail)
        if reason and job.assignment is not None:
            raise _Away(reason)
        if reason:
            raise Ignore(f"not answered because {reason}")
        if job.route.kind == COMMAND and job.route.action == addresses.REPLY:
            raise Unhandled("a reply to a delivered critique; relaying these comes later; kept")
        if job.route.kind == COMMAND and job.assignment is None:
            raise Unhandled(f"the command +{job.route.action} is not handled yet; kept")

    def take_critique(self, job: Job) -> str | None:
        mail, circle, assignment = job.mail, job.circle, job.assignment
        if assignment is None:
            return None
        assert mail is not None and circle is not None
        reviewer = members.get_by_id(self.db, assignment["reviewer_id"])
        if mail.from_addr != reviewer.email:
            raise Hold(
                f"a critique for assignment #{assignment['id']} came from {mail.from_addr}, "
                f"not from the reviewer {reviewer.email}; held for a moderator"
            )
        job.answer_to = reviewer.email
        reply = trim_reply(mail.text)
        words, trimmed = reply.text, reply.elided
        if not words.strip():
            raise Hold(f"a reply from {reviewer.email} to an assignment with no words of its own")
        message_id = mail.message_id or job.spooled.dedupe_key
        now = self.clock.now()
        late = now > parse_iso(assignment["due_at"])
        submission = assignments.get_submission(self.db, assignment["submission_id"])
        author = members.get_by_id(self.db, submission["member_id"])
        token = secrets.token_hex(12)
        delivery = self.composer.compose(
            circle,
            "critique_delivery",
            compose.CritiqueDelivery(
                author_name=author.greeting_name,
                reviewer_name=reviewer.greeting_name,
                circle_name=circle.name,
                title=submission["title"],
                critique=words,
                late=late,
            ),
            to=author.email,
            automatic=False,
            on_behalf_of=reviewer.greeting_name,
            reply_to=circle.action_address(addresses.REPLY, token),
            thread=tuple(submission["thread"].split()) or (submission["message_id"],),
        )
        critique_id = (
            self.db["critiques"]
            .insert(
                {
                    "assignment_id": assignment["id"],
                    "spool_id": job.spooled.id,
                    "message_id": message_id,
                    "body": words,
                    "trimmed": trimmed,
                    "late": int(late),
                    "received_at": iso(now),
                    "token": token,
                    "delivered_message_id": delivery["Message-ID"],
                }
            )
            .last_pk
        )
        self.db.execute(
            "UPDATE assignments SET status = ? WHERE id = ?", [assignments.DONE, assignment["id"]]
        )
        self._queue(job, delivery, "critique_delivery")
        receipt = self.composer.compose(
            circle,
            "critique_receipt",
            compose.CritiqueReceipt(
                reviewer_name=reviewer.greeting_name,
                author_name=author.greeting_name,
                circle_name=circle.name,
                title=submission["title"],
                late=late,
            ),
            to=reviewer.email,
            answering=mail,
        )
        self._queue(job, receipt, "critique_receipt")
        return (
            f"{'late ' if late else ''}critique #{critique_id} of {submission['title']!r} "
            f"from {reviewer.email} delivered to {author.email}"
        )

    def away(self, job: Job, reason: str) -> str:
        """An automatic answer to an assignment: the reviewer is away. Pause, pass work on."""
        assert job.assignment is not None and job.circle is not None
        reviewer = members.get_by_id(self.db, job.assignment["reviewer_id"])
        if job.mail is None or job.mail.from_addr != reviewer.email or reviewer.status != "active":
            raise Ignore(f"not answered because {reason}")
        members.set_status(self.db, reviewer.id, members.PAUSED)
        passed = assignments.pass_on(self.db, self.clock, self.composer, job.circle, reviewer)
        return (
            f"an automatic reply from {reviewer.email} ({reason}): paused them and passed "
            f"{passed} open assignment(s) to backups"
        )

    def take_draft(self, job: Job) -> str:
        mail, circle = job.mail, job.circle
        assert mail is not None and circle is not None
        member = members.find(self.db, circle, mail.from_addr) if mail.from_addr else None
        if member is None:
            raise Refuse(
                f"a draft from {mail.from_addr or 'an unknown sender'}, who is not a member",
                template="not_a_member",
                context=compose.NotAMember(
                    sender_address=mail.from_addr,
                    circle_name=circle.name,
                    circle_address=circle.address,
                    subject=mail.subject,
                ),
            )
        job.answer_to = member.email
        draft = submissions.read_draft(mail.subject, _draft_text(mail))
        if not draft.body and not mail.attachments:
            raise Refuse(
                f"a mail from {member.email} with no draft in it",
                template="empty_draft",
                context=compose.EmptyDraft(
                    member_name=member.greeting_name,
                    circle_name=circle.name,
                    circle_address=circle.address,
                    subject=mail.subject,
                    help_address=circle.action_address("help"),
                ),
            )
        message_id = mail.message_id or job.spooled.dedupe_key
        earlier = submissions.find_by_message_id(self.db, circle.id, message_id)
        if earlier is not None:
            raise Duplicate(f"already submitted as submission #{earlier['id']}")
        now = self.clock.now()
        submission_id = submissions.create(
            self.db,
            circle_id=circle.id,
            member_id=member.id,
            spool_id=job.spooled.id,
            message_id=message_id,
            thread=mail.thread,
            draft=draft,
            now=now,
        )
        config = circle.config
        waiting = held_back_members(
            assignments.history(self.db, circle), assignments.round_settings(circle)
        )
        ack = compose.SubmissionAck(
            member_name=member.greeting_name,
            circle_name=circle.name,
            title=draft.title,
            word_count=draft.word_count,
            asks=draft.asks,
            queue_position=submissions.queue_position(self.db, circle.id, submission_id),
            next_round=rounds.next_round_start(now, config)
            .astimezone(config.zone)
            .strftime(f"%A %-d %B %Y at %H:%M ({config.timezone})"),
            help_address=circle.action_address("help"),
            max_words=config.max_words,
            too_long=draft.word_count > config.max_words,
            held_back=member.id in waiting,
            participation_needed=config.participation_needed,
            participation_window=config.participation_window,
        )
        self._queue(
            job,
            self.composer.compose(circle, "submission_ack", ack, to=member.email, answering=mail),
            "submission_ack",
        )
        return f"draft {draft.title!r} from {member.email} queued as submission #{submission_id}"


def _draft_text(mail: Mail) -> str:
    """The draft: the mail's text, else the first attached .txt/.md file."""
    if mail.text.strip():
        return mail.text
    for attachment in mail.attachments:
        if attachment.filename.lower().endswith(TEXT_ATTACHMENT_SUFFIXES):
            return attachment.payload.decode("utf-8", "replace").replace("\r\n", "\n")
    return ""
