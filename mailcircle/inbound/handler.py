"""What every command handler shares: the command words, answering a mail, finding the
member it is from, and the help text (commands.py and choices.py build on it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailcircle.circle import members, profile, rounds, talk
from mailcircle.circle.circles import Circle
from mailcircle.circle.members import Member
from mailcircle.inbound.stage import Stage
from mailcircle.outbound import compose

if TYPE_CHECKING:
    from mailcircle.inbound.job import Job

JOIN, CONFIRM, LEAVE, PAUSE, RESUME, STATUS, HELP, REQUEST = (
    "join",
    "confirm",
    "leave",
    "pause",
    "resume",
    "status",
    "help",
    "request",
)
DIGEST, RSVP, NOTE = "digest", "rsvp", "note"
TALK, TIMEZONE, NAME, AGENDA = "talk", "timezone", "name", "agenda"
CONFIRMATION_DAYS = 7


def command_word(action: str, subject: str, text: str) -> str:
    """The command a mail asks for: the address's action, or for +request the first word
    of the subject, else of the first line of the text."""
    if action != REQUEST:
        return action
    for source in (subject, text.strip().split("\n", 1)[0] if text.strip() else ""):
        words = source.strip().lower().lstrip("+").split()
        if words:
            return words[0].strip(".,:;!")
    return ""


class Handler(Stage):
    def _answer(self, job: Job, template: str, context: object, *, reply_to: str = "") -> None:
        message = self.composer.compose(
            job.circle, template, context, to=job.answer_to, answering=job.mail, reply_to=reply_to
        )
        job.send(message, template)

    def _member(self, job: Job, acting: str = "") -> Member:
        """The member the mail is from, or a polite refusal that explains how to join.
        A command that changes something (``acting``) must come from a proven sender."""
        member = members.find(self.db, job.circle, job.mail.from_addr)
        if member is None:
            raise self.senders.stranger(job, what="a command")
        job.answer_to = member.email
        if acting:
            self.senders.require(job, member, acting)
        return member

    def _next_round(self, circle: Circle) -> str:
        config = circle.config
        start = rounds.next_round_start(self.clock.now(), config).astimezone(config.zone)
        return start.strftime(f"%A %-d %B at %H:%M ({config.timezone})")

    def help(self, job: Job, not_understood: str = "") -> str:
        circle = job.circle
        self._answer(
            job,
            "help",
            compose.Help(
                circle_name=circle.name,
                circle_address=circle.address,
                request_address=circle.action_address(REQUEST),
                join_address=circle.action_address(JOIN),
                not_understood=not_understood,
                talk_address=talk.address(circle),
            ),
        )
        if not_understood:
            return f"did not understand {not_understood!r}; sent the help text"
        return "sent the help text"

    def _zone_offer(self, job: Job, member: Member) -> str:
        """For a member still on UTC, a sentence offering the zone their mail's Date: shows."""
        zone = profile.zone_offer(job.mail.header("date"), member, self.clock.now())
        if not zone:
            return ""
        return (
            f"Your dates are in UTC, but your mail's clock says you may live in {zone} time. "
            f"To have every due date and digest in your own time, mail "
            f"{job.circle.action_address(TIMEZONE)} with {zone} (or your own zone) as the subject."
        )
