"""Answers to what the circle sent: critiques (replies to assignments), out-of-office
notices, replies to delivered critiques (relayed between author and reviewer), and
bounces to the VERP address (recorded against the member they name).
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mailcircle import addresses
from mailcircle.circle import assignments, bounces, critiques, members
from mailcircle.clock import parse_iso
from mailcircle.errors import Hold, Ignore, Refuse
from mailcircle.inbound.reply import trim_reply
from mailcircle.inbound.signs import ANSWERED, LOOP_WINDOW, is_thanks, sounds_away
from mailcircle.inbound.stage import Stage
from mailcircle.outbound import compose, sent

if TYPE_CHECKING:
    from mailcircle.inbound.job import Job
    from mailcircle.inbound.reply import Trimmed


def _detect(raw: bytes) -> tuple[list[str], list[str]]:
    """(temporarily, permanently) failed addresses, by flufl.bounce's detectors."""
    import email

    from flufl.bounce import all_failures

    try:
        temporary, permanent = all_failures(email.message_from_bytes(raw))
    except Exception:  # a report the detectors cannot read
        return [], []
    decode = lambda found: sorted(a.decode("utf-8", "replace").lower() for a in found)  # noqa: E731
    return decode(temporary), decode(permanent)


def _permanent(raw: bytes) -> bool:
    return bool(_detect(raw)[1])


_DSN_STATUS = re.compile(r"^Status:\s*([245]\.\d{1,3}\.\d{1,3})", re.IGNORECASE | re.MULTILINE)


def _closed(assignment: dict[str, Any], reviewer: members.Member) -> str:
    """Why an assignment takes no critique from its reviewer now ('' while it does)."""
    if reviewer.status == members.LEFT:
        return "you are no longer a member of the circle"
    if assignment["status"] == assignments.PASSED_ON:
        return "the work passed to another reviewer"
    if assignment["status"] == "withdrawn":
        return "the draft was withdrawn from the circle"
    return ""


class Answers(Stage):
    def critique(self, job: Job) -> str:
        """A reply to an assignment: deliver it to the author, send the reviewer a receipt."""
        mail, circle, assignment = job.mail, job.circle, job.assignment
        assert assignment is not None
        reviewer = members.get_by_id(self.db, assignment["reviewer_id"])
        if mail.from_addr != reviewer.email:
            raise Hold(
                f"a critique for assignment #{assignment['id']} came from {mail.from_addr}, "
                f"not from the reviewer {reviewer.email}; held for a moderator"
            )
        job.answer_to = reviewer.email
        closed = _closed(assignment, reviewer)
        if closed:
            raise Refuse(
                f"a critique from {reviewer.email} for assignment #{assignment['id']}, "
                f"which is closed ({closed}); nothing was delivered",
                template="critique_closed",
                context=compose.CritiqueClosed(
                    reviewer_name=reviewer.greeting_name,
                    circle_name=circle.name,
                    title=assignments.get_submission(self.db, assignment["submission_id"])["title"],
                    reason=closed,
                ),
            )
        self.senders.require(job, reviewer, "a critique")
        reply = self._trim_against_assignment(mail.text, assignment)
        if not reply.text.strip():
            if mail.defects:
                raise Hold(
                    f"a reply from {reviewer.email} to an assignment is malformed "
                    f"({', '.join(mail.defects)}) and no words could be read from it"
                )
            raise Hold(f"a reply from {reviewer.email} to an assignment with no words of its own")
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
                reviewer_name=reviewer.shown_as(circle.name),
                circle_name=circle.name,
                title=submission["title"],
                critique=reply.text,
                late=late,
            ),
            to=author.email,
            automatic=False,
            on_behalf_of=reviewer.shown_as(circle.name),
            reply_to=circle.action_address(addresses.REPLY, token),
            thread=tuple(submission["thread"].split()) or (submission["message_id"],),
        )
        receipt = self.composer.compose(
            circle,
            "critique_receipt",
            compose.CritiqueReceipt(
                reviewer_name=reviewer.greeting_name,
                author_name=author.shown_as(circle.name),
                circle_name=circle.name,
                title=submission["title"],
                late=late,
            ),
            to=reviewer.email,
            answering=mail,
        )
        job.send(delivery, "critique_delivery")
        job.send(receipt, "critique_receipt")
        # read and composed; now the writes (the first takes the lock)
        critique_id = critiques.record(
            self.db,
            assignment,
            spool_id=job.spooled.id,
            message_id=mail.message_id or job.spooled.dedupe_key,
            body=reply.text,
            trimmed=reply.elided,
            late=late,
            received_at=now,
            token=token,
            delivered_message_id=delivery["Message-ID"],
        )
        return (
            f"{'late ' if late else ''}critique #{critique_id} of {submission['title']!r} "
            f"from {reviewer.email} delivered to {author.email}"
        )

    def _trim_against_assignment(self, text: str, assignment: dict[str, Any]) -> Trimmed:
        """The reviewer's words. We know what we sent: our own lines in the reply (quoted or
        not) are not theirs; the draft's lines a comment answers stay beside it. The
        assignment mail is read back from the outbox (its Message-ID is on the row)."""
        ours = (
            sent.answered(self.db, (assignment["message_id"],))
            if assignment["message_id"]
            else None
        )
        submission = assignments.get_submission(self.db, assignment["submission_id"])
        return trim_reply(text, ours=[ours.text] if ours else [], draft=submission["body"])

    def away(self, job: Job, reason: str) -> str:
        """An automatic answer to an assignment: the reviewer is away. Pause, pass work on."""
        assert job.assignment is not None
        reviewer = members.get_by_id(self.db, job.assignment["reviewer_id"])
        if job.mail is None or job.mail.from_addr != reviewer.email or reviewer.status != "active":
            raise Ignore(f"not answered because {reason}")
        if not self.senders.proven(job) and job.circle.config.sender_check != "accept":
            raise Ignore(f"not answered because {reason}; not verified, so nobody was paused")
        members.set_status(self.db, reviewer.id, members.PAUSED)
        passed = assignments.pass_on(self.db, self.clock, self.composer, job.circle, reviewer)
        return (
            f"an automatic reply from {reviewer.email} ({reason}): paused them and passed "
            f"{passed} open assignment(s) to backups"
        )

    def relay(self, job: Job) -> str:
        """A reply to a delivered critique, from its author or its reviewer: pass it on."""
        mail, circle, route = job.mail, job.circle, job.route
        critique = critiques.by_token(self.db, route.token)
        if critique is None:
            raise Hold(f"the reply address token {route.token!r} matches no critique")
        author = members.get_by_id(self.db, critique["author_id"])
        reviewer = members.get_by_id(self.db, critique["reviewer_id"])
        if mail.from_addr == author.email:
            sender, receiver = author, reviewer
        elif mail.from_addr == reviewer.email:
            sender, receiver = reviewer, author
        else:
            raise Hold(
                f"a reply about critique #{critique['id']} came from {mail.from_addr}, "
                "who is neither its author nor its reviewer; held"
            )
        if sender.status == members.LEFT:
            raise Hold(f"a reply about critique #{critique['id']} from {sender.email}, who left")
        self.senders.require(job, sender, "a reply about a critique")
        # We know what we sent: the mail they answer (the delivered critique, or the last
        # relayed reply) is not their words, quoted or not.
        ours = sent.answered(
            self.db,
            (mail.in_reply_to, *reversed(mail.references), critique["delivered_message_id"]),
        )
        words = trim_reply(mail.text, ours=[ours.text] if ours else []).text
        if not words.strip():
            raise Hold(f"a reply from {sender.email} about a critique with no words of its own")
        job.answer_to = receiver.email
        message = self.composer.compose(
            circle,
            "relayed_reply",
            compose.RelayedReply(
                reviewer_name=receiver.greeting_name,
                author_name=sender.shown_as(circle.name),
                circle_name=circle.name,
                title=critique["title"],
                words=words,
            ),
            to=receiver.email,
            automatic=False,
            on_behalf_of=sender.shown_as(circle.name),
            reply_to=circle.action_address(addresses.REPLY, route.token),
            thread=(critique["delivered_message_id"],) if critique["delivered_message_id"] else (),
        )
        job.send(message, "relayed_reply")
        if sender is author:
            critiques.thank(self.db, critique["id"], self.clock.now())
        number = critique["id"]
        return f"a reply about critique #{number} relayed from {sender.email} to {receiver.email}"

    def bounce(self, job: Job) -> str:
        """A delivery report: record it against the member it names, never answer it.

        The VERP token in poets+bounce-TOKEN@ names the member; a report that lost it is read
        with Mailman's detectors (flufl.bounce) for the addresses that failed.
        """
        route, circle = job.route, job.circle
        member = members.by_bounce_token(self.db, route.token) if route.token else None
        raw = job.spooled.raw.decode("utf-8", "replace")
        found = _DSN_STATUS.search(raw)
        status = found.group(1) if found else ""
        if member is not None:
            if not status and not any(_detect(job.spooled.raw)):
                raise Ignore(
                    f"a mail to {member.email}'s bounce address that is no delivery report "
                    "(an automatic answer, probably); not counted"
                )
            hard = status.startswith("5.") or (not status and _permanent(job.spooled.raw))
            return bounces.record(
                self.db,
                self.clock,
                self.composer,
                circle,
                member,
                job.spooled.id,
                status,
                hard=hard,
            )
        # A report without our token proves nothing: anyone can write one naming a member.
        raise Ignore(
            "a delivery report without a bounce token; not counted against anyone "
            "(only reports to a member's own bounce address count)"
        )

    def note(self, job: Job) -> str:
        """A reply to an acknowledgement, receipt or answer of ours: a note, never a draft or
        a critique. Thanks are recorded quietly; anything longer gets one kind line (once a
        day) saying where drafts and critiques go. A note that follows ours at once is
        counted as a machine's (see senders.py)."""
        mail, circle = job.mail, job.circle
        member = members.find(self.db, circle, mail.from_addr) if mail.from_addr else None
        if member is None:
            raise self.senders.stranger(job, what="a reply to the circle's mail")
        job.answer_to = member.email
        ours = job.answering or sent.answered(
            self.db, (mail.in_reply_to, *reversed(mail.references))
        )
        what = ANSWERED.get(ours.purpose, "the circle's mail") if ours else "the circle's mail"
        words = trim_reply(mail.text, ours=[ours.text] if ours else []).text
        if not words.strip() or is_thanks(words):
            return f"a note from {member.email} in reply to {what}: thanks, recorded"
        senders = self.senders
        now = self.clock.now()
        fast = ours is not None and now - parse_iso(ours.created_at) <= LOOP_WINDOW
        if fast and sounds_away(words):
            counted = senders.count_loop(job, member)
            return (
                f"a note from {member.email} right after {what}; looks automatic, "
                f"not answered{counted}"
            )
        if senders.marked(circle.id, member.email, "noted", since=now - timedelta(days=1)):
            return f"a note from {member.email} in reply to {what}; answered once today already"
        senders.mark(circle.id, member.email, "noted")
        job.send(
            self.composer.compose(
                circle,
                "note_answer",
                compose.NoteAnswer(
                    member_name=member.greeting_name,
                    circle_name=circle.name,
                    answered=what,
                    circle_address=circle.address,
                    help_address=circle.action_address("help"),
                ),
                to=member.email,
                answering=mail,
            ),
            "note_answer",
        )
        return f"a note from {member.email} in reply to {what}; told where drafts go"

    def critique_token(self, message_ids: tuple[str, ...]) -> str:
        """The reply token of the delivered critique these Message-IDs thread under."""
        return critiques.token_of_delivered(self.db, message_ids)
