"""The pipeline: what one spooled mail means, as a tuple of small steps read top to bottom.

A step stops a mail by raising an ``Outcome`` (Hold, Refuse, Ignore, Unhandled, Duplicate);
the last step acts and returns the sentence recorded as the outcome. Steps never queue mail
themselves: the mails a mail causes are ``job.send``-ed, and ``finish`` queues them (answers
within the cap, senders.py) in the write that records the outcome.

The worker (process.py) runs the steps in a transaction that takes the write lock only at
its first write: reading, trimming, routing and composing come first, so the SMTP edge
never waits for them.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable

from sqlite_utils import Database

from mailcircle import addresses
from mailcircle.circle import (
    assignments,
    circles,
    holds,
    mailing,
    members,
)
from mailcircle.circle.circles import Circle
from mailcircle.clock import Clock
from mailcircle.errors import Duplicate, Hold, Ignore, Outcome, Refuse, Unhandled
from mailcircle.inbound.answers import Answers
from mailcircle.inbound.commands import Commands
from mailcircle.inbound.docx import AttachmentRefused
from mailcircle.inbound.drafts import Drafts
from mailcircle.inbound.job import Job, Spooled
from mailcircle.inbound.parse import Mail
from mailcircle.inbound.route import BOUNCE, COMMAND, DRAFT, Route, automatic_reason, route
from mailcircle.inbound.senders import Senders
from mailcircle.inbound.talk import Talk
from mailcircle.inbound.verify import SenderCheck
from mailcircle.outbound import compose, outbox, sent

log = logging.getLogger(__name__)

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


class Pipeline:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        composer: compose.Composer,
        sender_check: SenderCheck | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.composer = composer
        self.senders = Senders(db, clock, composer, sender_check or SenderCheck())
        self.answers = Answers(db, clock, composer, self.senders)
        self.commands = Commands(db, clock, composer, self.senders, self.answers)
        self.talk = Talk(db, clock, composer, self.senders)
        self.drafts = Drafts(db, clock, composer, self.senders)
        self.steps: tuple[Callable[[Job], str | None], ...] = (
            self.skip_duplicate,
            self.decide_route,
            self.take_answer,
            self.take_talk,
            self.take_command,
            self.take_draft,
        )

    # --- driving -------------------------------------------------------------------------

    def start(self, spooled: Spooled, mail: Mail, *, earlier: int | None = None) -> Job:
        """The job for a parsed mail: its circle (Unhandled when the address is no longer
        one), its route by address, and who may be answered."""
        circle = circles.find(self.db, spooled.rcpt_to)
        if circle is None:
            raise Unhandled(f"{spooled.rcpt_to} is no longer a circle's address")
        reason = automatic_reason(mail, spooled.mail_from)
        return Job(
            spooled,
            mail,
            circle,
            route(spooled.rcpt_to, spooled.mail_from, circle.config.address_separator),
            earlier=earlier,
            answer_to="" if reason else (mail.from_addr or ""),
            confirmed=holds.released(self.db, spooled.id),
        )

    def run(self, job: Job) -> str:
        """Run the steps: the outcome sentence, or an Outcome raised where a step stopped."""
        return self._run_steps_from(job, self.steps[0])

    def _run_steps_from(self, job: Job, first: Callable[[Job], str | None]) -> str:
        """Run the steps from ``first`` on (a step that re-routes a mail runs the rest)."""
        names = [step.__name__ for step in self.steps]
        try:
            for step in self.steps[names.index(first.__name__) :]:
                result = step(job)
                if result is not None:
                    return result
        except _Away as away:
            return self.answers.away(job, away.reason)
        raise Unhandled("no step knew what to do with it")

    def finish(self, job: Job) -> str:
        """Queue the mails the steps sent (in the caller's transaction); the clause the
        outcome sentence gains when an answer was held back by the cap."""
        while job.mails:
            message, purpose = job.mails.pop(0)
            self._queue(job, message, purpose)  # may_answer may send moderators a note
        return _silenced(job)

    def stopped(self, job: Job, stop: Outcome) -> str:
        """What still happens for a mail a step stopped (after the steps' changes were
        rolled back): the stop's own effects, and the refusal's answer. Returns the clauses
        the outcome sentence gains."""
        job.forget()
        said = "".join(effect() for effect in stop.effects)
        told = ""
        if isinstance(stop, Refuse):
            told = self._answer_refusal(job, stop)
        return said + told + self.finish(job)

    def _answer_refusal(self, job: Job, refusal: Refuse) -> str:
        if not job.answer_to or refusal.context is None:
            return "; nobody was answered"
        message = self.composer.compose(
            job.circle, refusal.template, refusal.context, to=job.answer_to, answering=job.mail
        )
        self.finish(job)  # the effects' mails first
        if not self._queue(job, message, refusal.template):
            return ""
        return f"; {job.answer_to} was told why"

    def apologize(self, job: Job) -> str:
        """Tell the sender their mail is safe though it could not be processed (if we may)."""
        if not job.answer_to:
            return "; nobody was answered"
        message = self.composer.compose(
            job.circle,
            "processing_failed",
            compose.ProcessingFailed(
                circle_name=job.circle.name,
                subject=job.mail.subject,
                help_address=job.circle.action_address("help"),
            ),
            to=job.answer_to,
            answering=job.mail,
        )
        job.forget()
        if not self._queue(job, message, "processing_failed"):
            return _silenced(job) or "; its sender was answered for another copy of it"
        return f"; {job.answer_to} was told it is kept for a moderator"

    def unreadable(self, job: Job, refused: AttachmentRefused) -> Refuse:
        return Refuse(
            f"an attachment was not read: {refused}",
            template="unreadable_attachment",
            context=compose.UnreadableAttachment(
                circle_name=job.circle.name,
                subject=job.mail.subject,
                reason=str(refused),
                help_address=job.circle.action_address("help"),
            ),
        )

    def _queue(self, job: Job, message: compose.Message, purpose: str) -> bool:
        """Queue one mail this inbound mail causes, in its transaction. An answer to the
        mail's own sender goes out only within the cap on answers (senders.py); returns
        whether the mail was queued."""
        rcpt = outbox.recipient_of(message)
        if sent.answered_for_copy(self.db, job.spooled.dedupe_key, job.spooled.id, rcpt):
            log.info("inbound #%d: %s was answered for another copy already", job.spooled.id, rcpt)
            return False
        if rcpt == job.mail.from_addr and not self.senders.may_answer(job, rcpt):
            job.silenced.append(rcpt)
            return False
        job.queued.append(
            mailing.queue_for_circle(
                self.db,
                job.circle,
                message,
                now=self.clock.now(),
                purpose=purpose,
                spool_id=job.spooled.id,
            )
        )
        return True

    # --- the steps -----------------------------------------------------------------------

    def skip_duplicate(self, job: Job) -> None:
        if job.earlier is not None:
            raise Duplicate(f"the same mail as inbound #{job.earlier}; nothing was done again")

    def decide_route(self, job: Job) -> None:
        mail, circle = job.mail, job.circle
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
        if job.route.kind != COMMAND:
            return None
        return self.commands.handle(job)

    def take_draft(self, job: Job) -> str:
        member = (
            members.find(self.db, job.circle, job.mail.from_addr) if job.mail.from_addr else None
        )
        if member is None:
            raise self.senders.stranger(job, what="a draft")
        job.answer_to = member.email
        ours = self.senders.reply_to_ours(job, member)
        if ours is not None:  # "Thanks!" to an acknowledgement is not a draft
            self.follow(job, ours)
            return self._run_steps_from(job, self.take_answer)
        return self.drafts.take(job, member)


def with_null_sender(spooled: Spooled) -> Spooled:
    """A null sender stored as text by old versions ("<>") read as the empty address."""
    if spooled.mail_from.strip() == "<>":
        return dataclasses.replace(spooled, mail_from="")
    return spooled


def _silenced(job: Job) -> str:
    if not job.silenced:
        return ""
    return f"; not answered: {job.silenced[0]} had its share of answers today"


def _from_circle(mail: Mail, circle: Circle) -> bool:
    """Whether the mail is From: one of the circle's own addresses."""
    parsed = circle.parse(mail.from_addr) if mail.from_addr else None
    return parsed is not None and parsed.base == circle.address
