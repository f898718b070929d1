"""Who may act, and how much the circle answers.

- **Proof.** A member's mail acts only when its sender is verified (inbound/verify.py), or
  the member confirmed it from their own mailbox, or the circle's ``sender_check`` is
  ``accept``. Otherwise it is held and the member is asked, at their real address, to
  confirm by replying; moderators may release or discard it too.
- **Caps.** Answers to mail whose sender is not proven are capped per address and day;
  past the cap the circle goes quiet and tells the moderators once.
- **Loops and replies to our own mail.** A mail to the circle's address that answers one
  of the circle's own mails (by its headers, its subject, or by quoting our text), or that
  repeats itself, is never a new draft. A member whose mailbox keeps answering is paused
  and told why.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlite_utils import Database

from mailcircle.circle import assigning, holds, marks, members
from mailcircle.circle.members import Member
from mailcircle.clock import Clock
from mailcircle.errors import Hold, Ignore, Outcome, Refuse
from mailcircle.inbound.signs import (
    LOOP_WINDOW,
    SHORT_WORDS,
    bare_subject,
    body_hash,
    quotes_our_text,
    sounds_away,
    words_in,
)
from mailcircle.inbound.verify import SenderCheck, Verdict
from mailcircle.mail import Mail
from mailcircle.outbound import compose, sent
from mailcircle.text import first_word

if TYPE_CHECKING:
    from mailcircle.inbound.job import Job

ACCEPT = "accept"
ANSWERS_PER_DAY = 5  # answers to one unproven address in 24 hours; then silence
LOOPS_BEFORE_PAUSE = 3  # automatic-looking mails in a day before the member is paused
DAY = timedelta(days=1)


class Senders:
    def __init__(
        self, db: Database, clock: Clock, composer: compose.Composer, check: SenderCheck
    ) -> None:
        self.db = db
        self.clock = clock
        self.composer = composer
        self.check = check

    # --- proof -----------------------------------------------------------------------------

    def verdict(self, job: Job) -> Verdict:
        """Whether the From: address is proven (computed once per mail)."""
        if job.verdict is None:
            mail = job.mail
            if job.confirmed:
                job.verdict = Verdict(True, "the member confirmed it from their mailbox")
            else:
                job.verdict = self.check.check(
                    job.spooled.raw, mail.from_addr, mail.headers.get("authentication-results", ())
                )
        return job.verdict

    def proven(self, job: Job) -> bool:
        return bool(self.verdict(job))

    def require(self, job: Job, member: Member, what: str) -> None:
        """Let the mail act as ``member`` only when proven; otherwise hold it and ask them."""
        circle = job.circle
        if self.proven(job) or circle.config.sender_check == ACCEPT:
            return
        verdict = self.verdict(job)
        stop = Hold(
            f"{what} from {member.email} could not be verified ({verdict.how}); "
            "held until they confirm it from their own mailbox"
        )
        raise stop.then(lambda: self._ask_to_confirm(job, member, what))

    def _ask_to_confirm(self, job: Job, member: Member, what: str) -> str:
        circle, mail = job.circle, job.mail
        spool_id = job.spooled.id
        token = holds.create(self.db, self.clock, circle.id, member.email, holds.HELD, spool_id)
        confirm = circle.action_address("confirm", token)
        job.answer_to = member.email
        message = self.composer.compose(
            circle,
            "confirm_sender",
            compose.ConfirmSender(
                member_name=member.greeting_name,
                circle_name=circle.name,
                what=what,
                subject=compose.short_subject(mail.subject),
                confirm_address=confirm,
            ),
            to=member.email,
            reply_to=confirm,
            answering=mail,  # threads under the member's own mail in their client
        )
        job.send(message, "confirm_sender")
        return self._tell_moderators_once(job, member, what)

    def _tell_moderators_once(self, job: Job, member: Member, what: str) -> str:
        """Moderators hear of held mail from one member at most once a day."""
        circle = job.circle
        if self.marked(circle.id, member.email, "held_noted", since=self.clock.now() - DAY):
            return ""
        self.mark(circle.id, member.email, "held_noted")
        spool_id = job.spooled.id
        self._tell_moderators(
            job,
            topic=f"Held: {what} from {member.email} could not be verified",
            details=(
                f"Inbound message #{spool_id}, {what} from {member.email}, carries no "
                "proof that they sent it (no aligned DKIM signature, no trusted "
                "Authentication-Results). They were asked to confirm it. To let it act "
                'now, reply to this mail with "release"; to drop it, reply "discard". '
                f"Or: mailcircle inbox release {spool_id} / mailcircle inbox discard "
                f"{spool_id}. Further held mail from this address today is listed by "
                "mailcircle inbox list --status held."
            ),
            held=spool_id,
        )
        return "; moderators told"

    def _tell_moderators(
        self, job: Job, *, topic: str, details: str, held: int | None = None
    ) -> None:
        """A notice to each moderator, queued with this mail. For a ``held`` mail each gets
        their own token: replying "release" or "discard" decides it."""
        circle = job.circle

        def deciding(moderator: Member) -> str:
            if held is None:
                return ""
            token = holds.create(
                self.db, self.clock, circle.id, moderator.email, holds.MODERATE, held
            )
            return circle.action_address("confirm", token)

        notices = assigning.moderator_notices(
            self.db, self.composer, circle, topic=topic, details=details, reply_to=deciding
        )
        for message in notices:
            job.send(message, "moderator_notice")

    def confirmation(self, job: Job, row: dict[str, object]) -> str:
        """A reply through a held mail's token: the member or a moderator decides."""
        mail = job.mail
        spool_id = int(str(row["spool_id"]))
        email, purpose = str(row["email"]), str(row["purpose"])
        if mail.from_addr != email:
            raise Hold(
                f"a confirmation for held message #{spool_id} came from {mail.from_addr}, "
                f"not from {email}; held, not honoured"
            )
        if row["used_at"]:
            raise Ignore(f"a confirmation for held message #{spool_id}, which was settled already")
        first = _first_word(mail)
        says_no = first in ("no", "discard", "reject", "nope", "nein", "non", "not")
        if purpose == holds.MODERATE and first not in (
            "release",
            "approve",
            "yes",
            "ok",
            "accept",
        ):
            if not says_no:
                raise Hold(
                    f"a moderator's reply about held message #{spool_id} said neither "
                    "release nor discard"
                )
        who = ("moderator " if purpose == holds.MODERATE else "") + email
        if says_no:
            holds.discard(self.db, self.clock, spool_id, who)
            if purpose == holds.HELD:  # someone wrote in a member's name: moderators hear of it
                self._tell_moderators(
                    job,
                    topic=f"{email} says a mail in their name was not theirs",
                    details=(
                        f"Inbound message #{spool_id} came from {email}'s address without proof "
                        f"that they sent it, and {email} answered that it was not them. It was "
                        f"dropped and never acted. See it with: mailcircle inbox show {spool_id}"
                    ),
                )
                return (
                    f"{who} said held message #{spool_id} was not theirs; "
                    "discarded, moderators told"
                )
            return f"{who} discarded held message #{spool_id}"
        holds.release(self.db, self.clock, spool_id, who)
        return f"{who} released held message #{spool_id}; it acts now"

    def stranger(self, job: Job, *, what: str) -> Outcome:
        """A draft or command from a non-member: explain how to join, at most once a week
        (the notice is remembered even though the refusal rolls the step back)."""
        mail, circle = job.mail, job.circle
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

    # --- caps --------------------------------------------------------------------------------

    def may_answer(self, job: Job, rcpt_to: str) -> bool:
        """Whether an answer to ``rcpt_to`` may go out: always for a proven sender (or a
        member, where the circle believes From:), else at most ANSWERS_PER_DAY a day; the
        first time the cap bites, moderators hear of it."""
        circle = job.circle
        if job.mail is not None and rcpt_to == job.mail.from_addr:
            if self.proven(job):
                return True
            if circle.config.sender_check == ACCEPT and members.find(self.db, circle, rcpt_to):
                return True
        since = self.clock.now() - DAY
        if sent.answers_to(self.db, rcpt_to, since) < ANSWERS_PER_DAY:
            return True
        if not self.marked(circle.id, rcpt_to, "capped", since=since):
            self.mark(circle.id, rcpt_to, "capped")
            self._tell_moderators(
                job,
                topic=f"Answers to {rcpt_to} paused for a day",
                details=(
                    f"More than {ANSWERS_PER_DAY} mails in a day asked the circle to answer "
                    f"{rcpt_to} without proof that they came from that address. To spare that "
                    "mailbox, the circle stays silent to it for a day; the mails are kept "
                    "(mailcircle inbox list)."
                ),
            )
        return False

    # --- replies to our own mail, repeats, loops ------------------------------------------

    def reply_to_ours(self, job: Job, member: Member) -> sent.SentMail | None:
        """The mail of ours this mail to the circle's address answers, if it shows it by its
        subject or by quoting our text."""
        mail = job.mail
        now = self.clock.now()
        recent = sent.recent_to(self.db, member.email, now - timedelta(days=14))
        if not recent:
            return None
        subject = bare_subject(mail.subject)
        for ours in recent:
            if subject and bare_subject(ours.subject) == subject:
                return ours  # "Re: Queued for the next round: ...", or our subject as it was
        for ours in recent[:3]:
            if quotes_our_text(mail.text, ours.text):
                return ours
        return None

    def sounds_automatic(self, job: Job, member: Member) -> bool:
        """A short mail that says it is an away message and follows our mail at once: a
        machine's answer even without the headers (RFC 3834) that should say so."""
        mail = job.mail
        if mail.attachments or not sounds_away(mail.text):
            return False
        recent = sent.recent_to(self.db, member.email, self.clock.now() - LOOP_WINDOW, limit=1)
        return bool(recent)

    def repeated(self, job: Job, member: Member) -> bool:
        """Whether a short mail repeats words the member sent within a day. Drafts are long
        or attached; an auto-responder says the same few words."""
        words = self._short_words(job)
        if not words:
            return False
        since = self.clock.now() - DAY
        return self.marked(job.circle.id, member.email, "body", since=since, value=words)

    def remember_words(self, job: Job, member: Member) -> None:
        """Remember a short mail's words, to know them again (see ``repeated``)."""
        words = self._short_words(job)
        if words:
            self.mark(job.circle.id, member.email, "body", words)

    def _short_words(self, job: Job) -> str:
        """A short mail's words, hashed ('' for a long or attached one)."""
        mail = job.mail
        if mail.attachments or words_in(mail.text) >= SHORT_WORDS:
            return ""
        return body_hash(mail.subject + "\n" + mail.text)

    def looping(self, job: Job, member: Member, why: str) -> Ignore:
        """An automatic-looking mail: never answered; after a few in a day, pause the member
        (their mailbox seems to answer every mail) and tell them once."""
        stop = Ignore(f"not a draft: {why}; not answered, to avoid a mail loop")
        stop.then(lambda: self.count_loop(job, member))
        return stop

    def count_loop(self, job: Job, member: Member) -> str:
        circle = job.circle
        self.mark(circle.id, member.email, "loop", str(job.spooled.id))
        since = self.clock.now() - DAY
        count = self.count_marks(circle.id, member.email, "loop", since)
        current = members.get_by_id(self.db, member.id)
        if count < LOOPS_BEFORE_PAUSE or current.status != members.ACTIVE:
            return ""
        from mailcircle.circle import assignments

        members.set_status(self.db, member.id, members.PAUSED)
        passed = assignments.pass_on(self.db, self.clock, self.composer, circle, current)
        message = self.composer.compose(
            circle,
            "loop_paused",
            compose.LoopPaused(
                member_name=member.greeting_name,
                circle_name=circle.name,
                count=count,
                resume_address=circle.action_address("resume"),
            ),
            to=member.email,
        )
        job.send(message, "loop_paused")
        return (
            f"; {member.email} paused after {count} automatic answers in a day "
            f"({passed} assignment(s) passed on)"
        )

    # --- marks (circle/marks.py) ---------------------------------------------------------

    def mark(self, circle_id: int, email: str, kind: str, value: str = "") -> None:
        marks.mark(self.db, circle_id, email, kind, self.clock.now(), value)

    def marked(
        self, circle_id: int, email: str, kind: str, *, since: datetime, value: str = ""
    ) -> bool:
        return marks.marked(self.db, circle_id, email, kind, since=since, value=value)

    def count_marks(self, circle_id: int, email: str, kind: str, since: datetime) -> int:
        return marks.count(self.db, circle_id, email, kind, since)


def _first_word(mail: Mail) -> str:
    return first_word(mail.text, bare_subject(mail.subject))
