"""A member's own choices by mail: the weekly digest on or off, how they read the talk,
their time zone and name; and the circle's engagement days: RSVPs and agenda items."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from mailcircle.circle import digest, engagement, members, profile, talk
from mailcircle.circle.members import Member
from mailcircle.errors import MailcircleError
from mailcircle.inbound.handler import (
    AGENDA,
    DIGEST,
    NAME,
    TALK,
    TIMEZONE,
    Handler,
    command_word,
)
from mailcircle.mail import Mail
from mailcircle.outbound import compose
from mailcircle.text import first_word, without_prefixes

if TYPE_CHECKING:
    from mailcircle.inbound.job import Job

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


class Choices(Handler):
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
