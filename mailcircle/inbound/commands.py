"""Commands by mail: +join, +confirm-TOKEN, +leave, +pause, +resume, +status, +help, and
+request (the command word in the subject or first line). Each answers with a clear mail.

Joining and leaving are confirmed: the confirmation token goes only to the address that
joins or leaves, and is honoured only from that address, so a forged From: can never
add or remove anyone.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlite_utils import Database

from mailcircle.circle import (
    assignments,
    confirmations,
    digest,
    engagement,
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
from mailcircle.errors import Hold, MailcircleError, Refuse
from mailcircle.inbound.answers import Answers
from mailcircle.inbound.senders import Senders
from mailcircle.mail import Mail
from mailcircle.outbound import compose
from mailcircle.text import first_word, without_prefixes

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


YES = ("yes", "oui", "ja", "si", "sí", "y")
NO = ("no", "non", "nein", "nee", "nope", "n")


def _first_word(mail: Mail) -> str:
    return first_word(mail.text, mail.subject)


def _argument(mail: Mail | None, word: str) -> str:
    """What follows a command word: the subject without Re: and the word, else the first
    line of the text ("+timezone Europe/Paris", or Europe/Paris as the subject)."""
    if mail is None:
        return ""
    subject = without_prefixes(mail.subject)
    first_line = next((line for line in mail.text.split("\n") if line.strip()), "")
    for source in (subject, first_line):
        words = source.split()
        if words and words[0].lower().lstrip("+").rstrip(":") == word:
            words = words[1:]
        if words:
            return " ".join(words)
    return ""


class Commands:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        composer: compose.Composer,
        senders: Senders,
        answers: Answers,
    ) -> None:
        self.db = db
        self.clock = clock
        self.composer = composer
        self.senders = senders
        self.answers = answers

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
            DIGEST: self.digest,
            RSVP: self.rsvp,
            NOTE: self.answers.note,
            TALK: self.talk,  # poets+talk-each@ ... (a post to poets+talk@ never gets here)
            **{f"{TALK}-{choice}": self.talk for choice in (*talk.CHOICES, talk.SELF, talk.NOSELF)},
            TIMEZONE: self.timezone,
            NAME: self.name,
            AGENDA: self.agenda,
        }
        if word in handlers:
            return handlers[word](job)
        return self.help(job, not_understood=word or "(an empty request)")

    # --- answers ------------------------------------------------------------------------

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

    # --- the commands ---------------------------------------------------------------------

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

    def digest(self, job: Job) -> str:
        """+digest-off, +digest-on. A reply to a digest that says yes or no answers the
        engagement day it announces; any other reply gets the help text."""
        member = self._member(job)
        circle, route, mail = job.circle, job.route, job.mail
        if route.token not in ("on", "off"):
            upcoming = engagement.next_day(self.db, circle, self.clock.now())
            if upcoming and _first_word(mail) in YES + NO:
                route_for_day = dataclasses.replace(route, token=str(upcoming["id"]))
                job.route = route_for_day
                return self.rsvp(job)
            self.help(job, not_understood="a reply to the digest (it does not go to the circle)")
            return "a reply to the digest; sent the help text"
        self.senders.require(job, member, f"+digest-{route.token}")
        on = route.token == "on"
        digest.set_digest(self.db, member, digest.WEEKLY if on else digest.OFF)
        self._answer(
            job,
            "digest_answer",
            compose.DigestAnswer(
                member_name=member.greeting_name,
                circle_name=circle.name,
                on=on,
                other_address=circle.action_address(DIGEST, "off" if on else "on"),
            ),
        )
        return f"{member.email} turned the digest {route.token}"

    def rsvp(self, job: Job) -> str:
        """poets+rsvp-ID@: yes or no to an engagement day (the first word decides)."""
        member = self._member(job, acting="an RSVP")
        mail, circle, route = job.mail, job.circle, job.route
        day = engagement.get(self.db, circle, route.token)
        if day is None:
            return self.help(job, not_understood=f"rsvp-{route.token}")
        coming = _first_word(mail) not in NO
        engagement.rsvp(self.db, self.clock, day["id"], member.id, coming)
        self._answer(
            job,
            "rsvp_answer",
            compose.RsvpAnswer(
                member_name=member.greeting_name,
                circle_name=circle.name,
                day=day["day"],
                topic=day["topic"],
                coming=coming,
            ),
        )
        return f"{member.email} answered {'yes' if coming else 'no'} for {day['day']}"

    # --- the circle's talk and members' own settings ---------------------------------------

    def talk(self, job: Job) -> str:
        """poets+talk-each@, -digest@, -off@, -self@, -noself@ (or the word to +request)."""
        member = self._member(job, acting="a reading choice for the talk")
        circle, route, mail = job.circle, job.route, job.mail
        word = command_word(route.action, mail.subject, mail.text)
        wanted = route.token if word == TALK else word.partition("-")[2]
        if wanted not in (*talk.CHOICES, talk.SELF, talk.NOSELF):
            return self.help(job, not_understood=f"talk-{wanted}" if wanted else TALK)
        choice, own = talk.choice_of(self.db, member.id)
        turned_on = False
        if wanted in talk.CHOICES:
            choice = wanted
            talk.set_choice(self.db, member.id, choice)
            if choice == talk.DIGEST:
                turned_on = digest.set_digest(self.db, member, digest.WEEKLY) == digest.OFF
        else:
            own = wanted == talk.SELF
            talk.set_own_copies(self.db, member.id, own)
        address = circle.action_address
        self._answer(
            job,
            "talk_choice",
            compose.TalkChoice(
                member_name=member.greeting_name,
                circle_name=circle.name,
                choice=choice,
                own_copies=own,
                digest_turned_on=bool(turned_on),
                talk_address=talk.address(circle),
                each_address=address(TALK, talk.EACH),
                digest_address=address(TALK, talk.DIGEST),
                off_address=address(TALK, talk.OFF),
                self_address=address(TALK, talk.NOSELF if own else talk.SELF),
                zone_offer=self._zone_offer(job, member),
            ),
        )
        return f"{member.email} reads the talk: {choice}{', own posts too' if own else ''}"

    def timezone(self, job: Job) -> str:
        """poets+timezone@ with the zone in the subject (or "timezone Europe/Paris" to
        +request): due dates, round times and digests in the member's own time."""
        member = self._member(job, acting="a time zone change")
        wanted = _argument(job.mail, TIMEZONE)
        try:
            zone = profile.check_zone(wanted)
        except MailcircleError as err:
            return self._setting_answer(job, member, "time zone", wanted, problem=str(err))
        profile.set_timezone(self.db, member, zone)
        member = dataclasses.replace(member, timezone=zone)
        now = profile.local_text(self.clock.now(), member)
        return self._setting_answer(job, member, "time zone", zone, local_now=now)

    def name(self, job: Job) -> str:
        """poets+name@ with the name in the subject: what the circle calls the member."""
        member = self._member(job, acting="a name change")
        wanted = _argument(job.mail, NAME)
        try:
            name = profile.clean_name(wanted)
        except MailcircleError as err:
            return self._setting_answer(job, member, "name", wanted, problem=str(err))
        profile.set_name(self.db, member, name)
        return self._setting_answer(job, dataclasses.replace(member, name=name), "name", name)

    def _setting_answer(
        self,
        job: Job,
        member: Member,
        setting: str,
        value: str,
        *,
        problem: str = "",
        local_now: str = "",
    ) -> str:
        circle = job.circle
        shown = " ".join(value.split())[:80]
        self._answer(
            job,
            "member_setting",
            compose.MemberSetting(
                member_name=member.greeting_name,
                circle_name=circle.name,
                setting=setting,
                value=shown,
                problem=problem,
                local_now=local_now,
                command_address=circle.action_address(TIMEZONE if setting == "time zone" else NAME),
            ),
        )
        if problem:
            return f"{member.email} could not set their {setting} to {shown!r}: {problem}"
        return f"{member.email} set their {setting} to {shown!r}"

    def agenda(self, job: Job) -> str:
        """poets+agenda@ from a moderator: the subject (or first line) goes on the agenda of
        the next engagement day."""
        member = self._member(job, acting="an agenda item")
        circle = job.circle
        item = _argument(job.mail, AGENDA)
        upcoming = engagement.next_day(self.db, circle, self.clock.now())
        problem = ""
        if member.role != members.MODERATOR:
            problem = (
                "Only the circle's moderators can add to the engagement day's agenda. "
                f"To suggest something, write to everyone at {talk.address(circle)}."
            )
        elif upcoming is None:
            problem = "No engagement day is planned yet, so there is no agenda to add to."
        else:
            try:
                item = engagement.add_item(self.db, self.clock, upcoming, item, member.email)
            except MailcircleError as err:
                problem = f"{err}. Put the item in the subject of your mail."
        self._answer(
            job,
            "agenda_answer",
            compose.AgendaAnswer(
                member_name=member.greeting_name,
                circle_name=circle.name,
                item=" ".join(item.split())[:300],
                day=upcoming["when"] if upcoming else "",
                topic=upcoming["topic"] if upcoming else "",
                problem=problem,
            ),
        )
        if problem:
            return f"{member.email} could not add to the agenda: {problem}"
        return f"{member.email} added {item!r} to the agenda of {upcoming['day']}"  # type: ignore[index]

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

    def _confirmation(self, circle: Circle, email: str, name: str, purpose: str) -> str:
        return confirmations.create(self.db, circle.id, email, name, purpose, self.clock.now())
