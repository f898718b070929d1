"""The worker: turns each spooled mail into a recorded outcome, one transaction per mail.

Processing is a tuple of small steps read top to bottom. A step stops a mail by raising
an ``Outcome`` (Hold, Refuse, Ignore, Unhandled, Duplicate); the last step acts and
returns the sentence recorded as the outcome. Any other exception rolls the transaction
back and leaves the mail marked ``failed`` with the error, for a moderator to retry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlite_utils import Database

from mailcircle import addresses
from mailcircle import db as database
from mailcircle.circle import (
    assignments,
    circles,
    holds,
    mailing,
    members,
    profile,
    rounds,
    submissions,
)
from mailcircle.circle.assign import held_back_members
from mailcircle.circle.circles import Circle
from mailcircle.clock import Clock
from mailcircle.db import transaction
from mailcircle.errors import Duplicate, Hold, Ignore, Outcome, Refuse, Unhandled
from mailcircle.inbound import spool
from mailcircle.inbound.answers import Answers
from mailcircle.inbound.budget import Budget
from mailcircle.inbound.commands import Commands
from mailcircle.inbound.docx import AttachmentRefused, docx_text
from mailcircle.inbound.parse import Mail, parse
from mailcircle.inbound.route import BOUNCE, COMMAND, DRAFT, Route, automatic_reason, route
from mailcircle.inbound.senders import Senders
from mailcircle.inbound.spool import Spooled
from mailcircle.inbound.talk import Talk
from mailcircle.inbound.verify import SenderCheck, Verdict
from mailcircle.outbound import compose, outbox, sent

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
    answering: sent.SentMail | None = None  # the mail of ours it replies to, when known
    answer_to: str = ""  # who a refusal goes to; '' when nobody may be answered
    verdict: Verdict | None = None  # whether the From: address is proven (see senders.py)
    confirmed: bool = False  # a held mail released by its member or a moderator
    queued: list[int] = field(default_factory=list)
    silenced: list[str] = field(default_factory=list)  # answers not sent: the cap


# A mail is set aside as failed when the worker process died on it this many times (over
# its budget, or a crash), or when this many attempts never finished (the whole service
# died each time: kept higher, because a restart under load is usually not the mail's fault).
MAX_CRASHES = 2
MAX_STARTS = 4


class Worker:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        composer: compose.Composer,
        sender_check: SenderCheck | None = None,
        *,
        budget: Budget | None = None,
        give_way: Callable[[], None] = lambda: None,
    ) -> None:
        self.db = db
        self.give_way = give_way  # called before each write: lets the edge commit first
        self.clock = clock
        self.composer = composer
        self.sender_check = sender_check or SenderCheck()
        self.budget = budget  # per-mail CPU and memory limits, in a worker process of its own
        self.steps: tuple[Callable[[Job], str | None], ...] = (
            self.parse,
            self.find_circle,
            self.skip_duplicate,
            self.decide_route,
            self.take_answer,
            self.take_talk,
            self.take_command,
            self.take_draft,
        )
        self.answers = Answers(self)
        self.commands = Commands(self)
        self.senders = Senders(self)
        self.talk = Talk(self)

    # --- driving -------------------------------------------------------------------------
    # Each mail: count the attempt (its own short transaction, before anything can crash);
    # parse and read its attachments outside any transaction, within the budget; then run
    # the steps in one write transaction and record the outcome. A busy or full database
    # leaves the mail new (spool.Busy) for the loop to try again after a pause.

    def process_pending(self, limit: int = 50) -> int:
        """Process waiting mails, oldest first; returns how many were processed."""
        batch = spool.pending(self.db, limit)
        for spooled in batch:
            self.process(spooled)
        return len(batch)

    def process(self, spooled: Spooled) -> str:
        """Run the steps for one mail and record the outcome; returns the new status.

        Raises spool.Busy, leaving the mail new, when the database cannot be written now.
        """
        try:
            if spooled.crashes >= MAX_CRASHES or spooled.started >= MAX_STARTS:
                return self._quarantine(spooled)
            self.give_way()
            spool.claim(self.db, spooled.id, os.getpid())
        except Exception as err:
            if database.transient(err):
                raise spool.Busy(f"inbound #{spooled.id} waits: {err}") from err
            raise
        job = Job(spooled)
        try:
            try:
                with self.budget.applied() if self.budget else contextlib.nullcontext():
                    status, outcome = self._settle(job)
            except Exception as err:  # anything unforeseen: keep the mail, show the error
                if database.transient(err):
                    raise
                status, outcome = self._fail(job, err)
        except Exception as err:
            if not database.transient(err):
                raise
            self._unclaim(spooled)
            raise spool.Busy(f"inbound #{spooled.id} waits: {err}") from err
        log.info("inbound #%d %s: %s", spooled.id, status, outcome)
        return status

    def _fail(self, job: Job, err: Exception) -> tuple[str, str]:
        spooled = job.spooled
        if isinstance(err, MemoryError):
            limit = f"{self.budget.memory_mb} MB" if self.budget else "the memory it had"
            outcome = f"could not be processed: it needed more memory than its budget ({limit})"
        else:
            outcome = f"could not be processed: {type(err).__name__}: {err}"
        error = traceback.format_exc()
        log.error("inbound #%d failed: %s", spooled.id, outcome, exc_info=err)
        with transaction(self.db):
            outcome += self._apologize(job)
            if isinstance(err, MemoryError):
                outcome += self._tell_moderators(spooled, outcome)
            spool.record(self.db, self.clock, spooled.id, spool.FAILED, outcome, error)
        return spool.FAILED, outcome

    def _quarantine(self, spooled: Spooled) -> str:
        """A mail the worker died on twice (or never finished) is not tried a third time."""
        cause = spooled.error.strip() or "the worker stopped while processing it"
        outcome = (
            f"set aside after {max(spooled.crashes, spooled.started)} attempts that did not"
            f" finish ({cause}); not tried again until a moderator runs"
            f" `mailcircle inbox retry {spooled.id}`"
        )
        with transaction(self.db):
            outcome += self._tell_moderators(spooled, outcome)
            spool.record(self.db, self.clock, spooled.id, spool.FAILED, outcome, cause)
        log.error("inbound #%d failed: %s", spooled.id, outcome)
        return spool.FAILED

    def _tell_moderators(self, spooled: Spooled, outcome: str) -> str:
        circle = circles.find(self.db, spooled.rcpt_to)
        if circle is None:
            return ""
        told = assignments.tell_moderators(
            self.db,
            self.clock,
            self.composer,
            circle,
            topic=f"Inbound mail #{spooled.id} could not be processed",
            details=f"A mail from {spooled.mail_from or '<>'} to {spooled.rcpt_to}"
            f" ({spooled.size} bytes) {outcome}. It is kept: see it with `mailcircle inbox"
            f" show {spooled.id}`.",
        )
        return f"; {told} moderators were told" if told else ""

    def _unclaim(self, spooled: Spooled) -> None:
        """Give the attempt back (it stopped for the database's reasons, not the mail's)."""
        for pause in (0.0, 0.5, 2.0):
            time.sleep(pause)
            try:
                spool.unclaim(self.db, spooled.id)
                return
            except Exception as err:
                if not database.transient(err):
                    raise
        log.warning("inbound #%d: could not give its attempt back; it counts", spooled.id)

    def _prepare(self, job: Job) -> None:
        """The slow part, outside the write transaction: parse, read an attached draft."""
        if job.mail is None:
            self.parse(job)
        assert job.mail is not None
        try:
            _draft_text(job.mail)  # a .docx is read here once; take_draft finds it read
        except AttachmentRefused:
            pass  # take_draft meets it again, and the author is told

    def _settle(self, job: Job) -> tuple[str, str]:
        try:
            self._prepare(job)  # may stop the mail too (a Hold for unreadable MIME)
            self.give_way()
            with transaction(self.db):
                outcome = self._run_steps(job) + _silenced(job)
                spool.record(self.db, self.clock, job.spooled.id, spool.DONE, outcome)
            return spool.DONE, outcome
        except (Outcome, AttachmentRefused) as stopped:
            # the steps' changes are rolled back; record why instead
            stop = stopped if isinstance(stopped, Outcome) else self._unreadable(job, stopped)
            job.queued.clear()
            job.silenced.clear()
            outcome = stop.reason
            with transaction(self.db):
                for effect in stop.effects:
                    outcome += effect()
                if isinstance(stop, Refuse):
                    outcome += self._answer_refusal(job, stop)
                outcome += _silenced(job)
                spool.record(self.db, self.clock, job.spooled.id, stop.status, outcome)
            return stop.status, outcome

    def _unreadable(self, job: Job, refused: AttachmentRefused) -> Refuse:
        reason = f"an attachment was not read: {refused}"
        if job.circle is None or job.mail is None:
            return Refuse(reason, template="unreadable_attachment")
        return Refuse(
            reason,
            template="unreadable_attachment",
            context=compose.UnreadableAttachment(
                circle_name=job.circle.name,
                subject=job.mail.subject,
                reason=str(refused),
                help_address=job.circle.action_address("help"),
            ),
        )

    def _run_steps(self, job: Job) -> str:
        return self._run_steps_from(job, self.steps[0])

    def _run_steps_from(self, job: Job, first: Callable[[Job], str | None]) -> str:
        """Run the steps from ``first`` on (a step that re-routes a mail runs the rest)."""
        names = [step.__name__ for step in self.steps]
        try:
            for step in self.steps[names.index(first.__name__) :]:
                if step == self.parse and job.mail is not None:
                    continue  # parsed already, outside the transaction (_prepare)
                result = step(job)
                if result is not None:
                    return result
        except _Away as away:
            return self.answers.away(job, away.reason)
        raise Unhandled("no step knew what to do with it")

    def _answer_refusal(self, job: Job, refusal: Refuse) -> str:
        if not job.answer_to or job.circle is None or refusal.context is None:
            return "; nobody was answered"
        message = self.composer.compose(
            job.circle, refusal.template, refusal.context, to=job.answer_to, answering=job.mail
        )
        if not self.queue(job, message, refusal.template):
            return ""
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
                if not self.queue(job, message, "processing_failed"):
                    return "; " + _silenced(job).lstrip("; ")
        except Exception:
            log.exception("could not queue the apology for inbound #%d", job.spooled.id)
            return "; the sender could not be told"
        return f"; {job.answer_to} was told it is kept for a moderator"

    def queue(self, job: Job, message: object, purpose: str) -> bool:
        """Queue a mail this inbound mail causes, in its transaction. An answer to the mail's
        own sender goes out only within the cap on answers (senders.py); returns whether
        the mail was queued."""
        assert job.circle is not None
        rcpt = outbox.recipient_of(message)  # type: ignore[arg-type]
        if _answered_already(self.db, job.spooled, rcpt):
            log.info("inbound #%d: %s was answered for another copy already", job.spooled.id, rcpt)
            return False
        mail = job.mail
        if mail is not None and rcpt == mail.from_addr and not self.senders.may_answer(job, rcpt):
            job.silenced.append(rcpt)
            return False
        job.queued.append(
            mailing.queue_for_circle(
                self.db,
                job.circle,
                message,  # type: ignore[arg-type]
                now=self.clock.now(),
                purpose=purpose,
                spool_id=job.spooled.id,
            )
        )
        return True

    # --- the steps -----------------------------------------------------------------------

    def parse(self, job: Job) -> None:
        if job.spooled.mail_from.strip() == "<>":  # a null sender stored as text by old versions
            job.spooled = dataclasses.replace(job.spooled, mail_from="")
        try:
            job.mail = parse(job.spooled.raw)
        except RecursionError:
            raise Hold(
                "its MIME parts are nested too deeply to be read; kept for a moderator"
            ) from None
        job.confirmed = holds.released(self.db, job.spooled.id)
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
        job.route = route(
            job.spooled.rcpt_to, job.spooled.mail_from, circle.config.address_separator
        )
        if job.route.kind == BOUNCE:
            return  # take_answer records it; it is never answered
        if mail.header("list-id").endswith(f"<{circle.list_id}>") or _from_circle(mail, circle):
            raise Ignore("the circle's own mail came back; dropped to avoid a loop")
        if job.route.kind == COMMAND and job.route.action == addresses.CRITIQUE:
            job.assignment = assignments.find_by_token(self.db, job.route.token)
            if job.assignment is None:
                raise Hold(f"the critique address token {job.route.token!r} matches no assignment")
        elif job.route.kind == DRAFT and (mail.in_reply_to or mail.references):
            # A reply whose client dropped our Reply-To still threads to what it answers.
            ours = sent.answered(self.db, (mail.in_reply_to, *reversed(mail.references)))
            if ours is not None:
                self.follow(job, ours)
            else:
                job.assignment = assignments.find_by_message_ids(
                    self.db, (*mail.references, mail.in_reply_to)
                )
        reason = automatic_reason(mail, job.spooled.mail_from) or out_of_office(mail)
        if reason and job.assignment is not None:
            raise _Away(reason)
        if reason:
            raise Ignore(f"not answered because {reason}")

    def follow(self, job: Job, ours: sent.SentMail) -> None:
        """Route a mail to the circle's address that replies to ``ours`` as what it is: a
        critique (ours was an assignment or reminder), a reply about a critique, an answer
        to the digest, or else a note (never a new draft)."""
        mail = job.mail
        assert mail is not None
        job.answering = ours
        chain = (ours.message_id, mail.in_reply_to, *reversed(mail.references))
        if ours.purpose in ("assignment", "reminder", "backup_assignment"):
            job.assignment = assignments.find_by_message_ids(self.db, tuple(reversed(chain)))
            if job.assignment is not None:
                return
        if ours.purpose in ("critique_delivery", "relayed_reply"):
            token = self.answers.critique_token(chain)
            if token:
                job.route = Route(COMMAND, action=addresses.REPLY, token=token)
                return
        if ours.purpose == "digest":
            job.route = Route(COMMAND, action="digest")
            return
        if ours.purpose in ("talk_post", "engagement_kickoff"):
            job.route = Route(COMMAND, action=addresses.TALK)
            return
        job.route = Route(COMMAND, action=addresses.NOTE)

    def take_answer(self, job: Job) -> str | None:
        assert job.route is not None
        if job.route.kind == BOUNCE:
            return self.answers.bounce(job)
        if job.assignment is not None:
            return self.answers.critique(job)
        if job.route.kind == COMMAND and job.route.action == addresses.REPLY:
            return self.answers.relay(job)
        return None

    def take_talk(self, job: Job) -> str | None:
        """A post to poets+talk@ (or a reply to one) goes to every member: inbound/talk.py."""
        return self.talk.take(job)

    def take_command(self, job: Job) -> str | None:
        assert job.route is not None
        if job.route.kind != COMMAND:
            return None
        return self.commands.handle(job)

    def stranger(self, job: Job, *, what: str) -> Outcome:
        """A draft or command from a non-member: explain how to join, at most once a week
        (the notice is remembered even though the refusal rolls the step back)."""
        mail, circle = job.mail, job.circle
        assert mail is not None and circle is not None
        reason = f"{what} from {mail.from_addr or 'an unknown sender'}, who is not a member"
        now = self.clock.now()
        if members.stranger_told_lately(self.db, circle, mail.from_addr, now):
            return Ignore(reason + "; they were told how to join lately, so not again")

        def remember() -> str:
            members.remember_stranger_told(self.db, circle, mail.from_addr, now)
            return ""

        return Refuse(
            reason,
            template="not_a_member",
            context=compose.NotAMember(
                sender_address=mail.from_addr,
                circle_name=circle.name,
                circle_address=circle.address,
                subject=compose.short_subject(mail.subject),
                join_address=circle.action_address("join"),
            ),
        ).then(remember)

    def take_draft(self, job: Job) -> str:
        mail, circle = job.mail, job.circle
        assert mail is not None and circle is not None
        member = members.find(self.db, circle, mail.from_addr) if mail.from_addr else None
        if member is None:
            raise self.stranger(job, what="a draft")
        job.answer_to = member.email
        ours = self.senders.reply_to_ours(job, member)
        if ours is not None:  # "Thanks!" to an acknowledgement is not a draft
            self.follow(job, ours)
            return self._run_steps_from(job, self.take_answer)
        if self.senders.sounds_automatic(job, member):
            raise self.senders.looping(job, member, "an away message right after our mail")
        if self.senders.repeated(job, member):
            raise self.senders.looping(job, member, "the same words as their mail earlier today")
        self.senders.require(job, member, "a draft")
        draft = submissions.read_draft(mail.subject, _draft_text(mail))
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
            files=submissions.files_in(job.spooled.raw),
        )
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
            queue_position=submissions.queue_position(self.db, circle.id, submission_id),
            next_round=profile.local_text(rounds.next_round_start(now, config), member, year=True),
            help_address=circle.action_address("help"),
            max_words=config.max_words,
            too_long=draft.word_count > config.max_words,
            held_back=member.id in waiting,
            participation_needed=config.participation_needed,
            participation_window=config.participation_window,
        )
        self.queue(
            job,
            self.composer.compose(circle, "submission_ack", ack, to=member.email, answering=mail),
            "submission_ack",
        )
        return f"draft {draft.title!r} from {member.email} queued as submission #{submission_id}"


def _answered_already(db: Database, spooled: Spooled, to: str) -> bool:
    """Whether another row of the same mail (one per recipient) already answered ``to``:
    a mail to a thousand circle addresses gets one answer, not a thousand."""
    row = db.execute(
        # through the copies of this mail (a few), not all mail ever sent to ``to`` (+)
        "SELECT 1 FROM spool s JOIN outbox o ON o.spool_id = s.id"
        " WHERE s.dedupe_key = ? AND s.id != ? AND +o.rcpt_to = ? LIMIT 1",
        [spooled.dedupe_key, spooled.id, to],
    ).fetchone()
    return row is not None


def _silenced(job: Job) -> str:
    if not job.silenced:
        return ""
    return f"; not answered: {job.silenced[0]} had its share of answers today"


def _from_circle(mail: Mail, circle: Circle) -> bool:
    """Whether the mail is From: one of the circle's own addresses."""
    parsed = circle.parse(mail.from_addr) if mail.from_addr else None
    return parsed is not None and parsed.base == circle.address


def _draft_text(mail: Mail) -> str:
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
