"""Commands by mail: +join, +confirm-TOKEN, +leave, +pause, +resume, +status, +help, and
+request (the command word in the subject or first line). Each answers with a clear mail;
a member's own choices (+digest, +talk-..., +timezone, +name, +rsvp, +agenda) are in
choices.py.

Joining and leaving are confirmed: the confirmation token goes only to the address that
joins or leaves, and is honoured only from that address, so a forged From: can never
add or remove anyone.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sqlite_utils import Database

from mailcircle.circle import (
    assignments,
    confirmations,
    holds,
    member_work,
    members,
    profile,
    rounds,
    talk,
)
from mailcircle.circle.assign import held_back_members
from mailcircle.circle.circles import Circle
from mailcircle.circle.members import Member
from mailcircle.clock import Clock, parse_iso
from mailcircle.errors import Hold, Refuse
from mailcircle.inbound.answers import Answers
from mailcircle.inbound.choices import Choices
from mailcircle.inbound.handler import (
    AGENDA,
    CONFIRM,
    DIGEST,
    HELP,
    JOIN,
    LEAVE,
    NAME,
    NOTE,
    PAUSE,
    REQUEST,
    RESUME,
    RSVP,
    STATUS,
    TALK,
    TIMEZONE,
    Handler,
    command_word,
)
from mailcircle.inbound.senders import Senders
from mailcircle.outbound import compose

if TYPE_CHECKING:
    from mailcircle.inbound.job import Job

__all__ = ["Commands", "command_word"]

CONFIRMATION_DAYS = 7


class Commands(Handler):
    def __init__(
        self,
        db: Database,
        clock: Clock,
        composer: compose.Composer,
        senders: Senders,
        answers: Answers,
    ) -> None:
        super().__init__(db, clock, composer, senders)
        self.answers = answers
        self.choices = Choices(db, clock, composer, senders)

    def handle(self, job: Job) -> str:
        word = command_word(job.route.action, job.mail.subject, job.mail.text)
        handlers = {
            JOIN: self.join,
            CONFIRM: self.confirm,
            LEAVE: self.leave,
            PAUSE: self.pause,
            RESUME: self.resume,
            STATUS: self.status,
            HELP: self.help,
            DIGEST: self.choices.digest,
            RSVP: self.choices.rsvp,
            NOTE: self.answers.note,
            TALK: self.choices.talk,  # poets+talk-each@ ... (never a post to poets+talk@)
            **{
                f"{TALK}-{choice}": self.choices.talk
                for choice in (*talk.CHOICES, talk.SELF, talk.NOSELF)
            },
            TIMEZONE: self.choices.timezone,
            NAME: self.choices.name,
            AGENDA: self.choices.agenda,
        }
        if word in handlers:
            return handlers[word](job)
        return self.help(job, not_understood=word or "(an empty request)")

    # --- the commands ---------------------------------------------------------------------

    def join(self, job: Job) -> str:
        mail, circle = job.mail, job.circle
        if members.find(self.db, circle, mail.from_addr) is not None:
            return self.status(job)
        token = self._confirmation(circle, mail.from_addr, mail.from_name, JOIN)
        confirm = circle.action_address(CONFIRM, token)
        self._answer(
            job,
            "join_confirm",
            compose.JoinConfirm(
                circle_name=circle.name,
                email=mail.from_addr,
                confirm_address=confirm,
            ),
            reply_to=confirm,
        )
        return f"{mail.from_addr} asked to join; confirmation sent to that address"

    def leave(self, job: Job) -> str:
        """+leave: from a verified sender (e.g. a mail client's unsubscribe button) it
        completes at once; otherwise a confirmation goes to the member's own address."""
        member = self._member(job)
        circle = job.circle
        if self.senders.proven(job):
            return self._leave_now(job, member)
        token = self._confirmation(circle, member.email, member.name, LEAVE)
        confirm = circle.action_address(CONFIRM, token)
        self._answer(
            job,
            "leave_confirm",
            compose.LeaveConfirm(
                member_name=member.greeting_name,
                circle_name=circle.name,
                confirm_address=confirm,
            ),
            reply_to=confirm,
        )
        return f"{member.email} asked to leave; confirmation sent"

    def confirm(self, job: Job) -> str:
        mail, circle, route = job.mail, job.circle, job.route
        held = holds.find(self.db, route.token, circle.id)
        if held is not None:
            return self.senders.confirmation(job, held)
        found = confirmations.find(self.db, route.token, circle.id)
        if found is None:
            return self.help(job, not_understood=f"confirm-{route.token}")
        email, name, purpose = found.email, found.name, found.purpose
        if mail.from_addr != email:
            raise Hold(
                f"a {purpose} confirmation for {email} came from {mail.from_addr}; "
                "held, not honoured"
            )
        if found.used:
            return self.status(job) if purpose == JOIN else "a confirmation used twice; ignored"
        if self.clock.now() - found.created_at > timedelta(days=CONFIRMATION_DAYS):
            raise Refuse(
                f"a {purpose} confirmation older than {CONFIRMATION_DAYS} days",
                template="help",
                context=compose.Help(
                    circle_name=circle.name,
                    circle_address=circle.address,
                    request_address=circle.action_address(REQUEST),
                    join_address=circle.action_address(JOIN),
                    not_understood="an expired confirmation (please ask again)",
                ),
            )
        confirmations.use(self.db, route.token, self.clock.now())
        job.answer_to = email
        if purpose == JOIN:
            member = members.add(self.db, self.clock, circle, email, name)
            self._answer(
                job,
                "welcome",
                compose.Welcome(
                    member_name=member.greeting_name,
                    circle_name=circle.name,
                    circle_address=circle.address,
                    help_address=circle.action_address(HELP),
                    next_round=self._next_round(circle),
                ),
            )
            return f"{email} confirmed and joined"
        leaving = members.find(self.db, circle, email)
        if leaving is None:
            return "a leave confirmation for someone who is no longer a member; ignored"
        return "confirmed: " + self._leave_now(job, leaving)

    def _leave_now(self, job: Job, member: Member) -> str:
        circle = job.circle
        member = members.remove(self.db, self.clock, circle, member.email)
        passed = assignments.pass_on(self.db, self.clock, self.composer, circle, member)
        self._answer(
            job,
            "goodbye",
            compose.Goodbye(
                member_name=member.greeting_name,
                circle_name=circle.name,
                join_address=circle.action_address(JOIN),
            ),
        )
        return f"{member.email} left; {passed} open assignment(s) passed on"

    def pause(self, job: Job) -> str:
        member = self._member(job, acting="a pause")
        circle = job.circle
        members.set_status(self.db, member.id, members.PAUSED)
        passed = assignments.pass_on(self.db, self.clock, self.composer, circle, member)
        self._answer(
            job,
            "pause_answer",
            compose.PauseAnswer(
                member_name=member.greeting_name,
                circle_name=circle.name,
                paused=True,
                passed_on=passed,
                other_address=circle.action_address(RESUME),
            ),
        )
        return f"{member.email} paused; {passed} open assignment(s) passed on"

    def resume(self, job: Job) -> str:
        member = self._member(job, acting="a resume")
        circle = job.circle
        members.set_status(self.db, member.id, members.ACTIVE)
        self._answer(
            job,
            "pause_answer",
            compose.PauseAnswer(
                member_name=member.greeting_name,
                circle_name=circle.name,
                paused=False,
                passed_on=0,
                other_address=circle.action_address(PAUSE),
            ),
        )
        return f"{member.email} resumed"

    def status(self, job: Job) -> str:
        member = self._member(job)
        circle = job.circle
        open_work = [
            f'  "{row["title"]}" by {row["author"]}, due '
            + assignments.due_text(parse_iso(row["due_at"]), member)
            for row in member_work.open_assignments(self.db, circle, member.id)
        ]
        drafts = [
            f'  "{row["title"]}" ({row["word_count"]} words)'
            for row in member_work.queued_drafts(self.db, member.id)
        ]
        config = circle.config
        waiting = held_back_members(
            assignments.history(self.db, circle, reviewer_id=member.id),
            assignments.round_settings(circle),
        )
        self._answer(
            job,
            "status",
            compose.StatusAnswer(
                member_name=member.greeting_name,
                circle_name=circle.name,
                member_status=member.status,
                assignments="\n".join(open_work),
                drafts="\n".join(drafts),
                held_back=member.id in waiting,
                participation_needed=config.participation_needed,
                participation_window=config.participation_window,
                next_round=profile.local_text(
                    rounds.next_round_start(self.clock.now(), config), member
                ),
                talk=talk.choice_of(self.db, member.id)[0],
                talk_address=talk.address(circle),
                timezone=member.timezone,
                zone_offer=self._zone_offer(job, member),
            ),
        )
        return f"sent {member.email} their status"

    def _confirmation(self, circle: Circle, email: str, name: str, purpose: str) -> str:
        return confirmations.create(self.db, circle.id, email, name, purpose, self.clock.now())
