"""Answers to what the circle sent: critiques (replies to assignments), out-of-office
notices, replies to delivered critiques (relayed between author and reviewer), and
bounces to the VERP address (recorded against the member they name).
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Any

from mailcircle import addresses
from mailcircle.circle import assignments, bounces, members
from mailcircle.clock import iso, parse_iso
from mailcircle.errors import Hold, Ignore
from mailcircle.inbound.reply import trim_reply
from mailcircle.outbound import compose

if TYPE_CHECKING:
    from mailcircle.inbound.process import Job, Worker
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


class Answers:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.db = worker.db
        self.clock = worker.clock
        self.composer = worker.composer

    def critique(self, job: Job) -> str:
        """A reply to an assignment: deliver it to the author, send the reviewer a receipt."""
        mail, circle, assignment = job.mail, job.circle, job.assignment
        assert mail is not None and circle is not None and assignment is not None
        reviewer = members.get_by_id(self.db, assignment["reviewer_id"])
        if mail.from_addr != reviewer.email:
            raise Hold(
                f"a critique for assignment #{assignment['id']} came from {mail.from_addr}, "
                f"not from the reviewer {reviewer.email}; held for a moderator"
            )
        job.answer_to = reviewer.email
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
                reviewer_name=reviewer.greeting_name,
                circle_name=circle.name,
                title=submission["title"],
                critique=reply.text,
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
                    "message_id": mail.message_id or job.spooled.dedupe_key,
                    "body": reply.text,
                    "trimmed": reply.elided,
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
        self.worker._queue(job, delivery, "critique_delivery")
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
        self.worker._queue(job, receipt, "critique_receipt")
        return (
            f"{'late ' if late else ''}critique #{critique_id} of {submission['title']!r} "
            f"from {reviewer.email} delivered to {author.email}"
        )

    def _trim_against_assignment(self, text: str, assignment: dict[str, Any]) -> Trimmed:
        """The reviewer's words. We know what we sent: our own lines in the reply (quoted or
        not) are not theirs; the draft's lines a comment answers stay beside it. The
        assignment mail is read back from the outbox (its Message-ID is on the row)."""
        from mailcircle.inbound.parse import parse

        row = None
        if assignment["message_id"]:
            query = "SELECT raw FROM outbox WHERE message_id = ?"
            row = self.db.execute(query, [assignment["message_id"]]).fetchone()
        sent = parse(row[0]).text if row else ""
        submission = assignments.get_submission(self.db, assignment["submission_id"])
        return trim_reply(text, ours=[sent] if sent else [], draft=submission["body"])

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

    def relay(self, job: Job) -> str:
        """A reply to a delivered critique, from its author or its reviewer: pass it on."""
        mail, circle, route = job.mail, job.circle, job.route
        assert mail is not None and circle is not None and route is not None
        critique = self._critique_by_token(route.token)
        if critique is None:
            raise Hold(f"the reply address token {route.token!r} matches no critique")
        author = members.get_by_id(self.db, critique["author_id"])
        reviewer = members.get_by_id(self.db, critique["reviewer_id"])
        if mail.from_addr == author.email:
            sender, receiver = author, reviewer
            if not critique["thanked_at"]:
                self.db.execute(
                    "UPDATE critiques SET thanked_at = ? WHERE id = ?",
                    [iso(self.clock.now()), critique["id"]],
                )
        elif mail.from_addr == reviewer.email:
            sender, receiver = reviewer, author
        else:
            raise Hold(
                f"a reply about critique #{critique['id']} came from {mail.from_addr}, "
                "who is neither its author nor its reviewer; held"
            )
        words = trim_reply(mail.text).text
        if not words.strip():
            raise Hold(f"a reply from {sender.email} about a critique with no words of its own")
        job.answer_to = receiver.email
        message = self.composer.compose(
            circle,
            "relayed_reply",
            compose.RelayedReply(
                reviewer_name=receiver.greeting_name,
                author_name=sender.greeting_name,
                circle_name=circle.name,
                title=critique["title"],
                words=words,
            ),
            to=receiver.email,
            automatic=False,
            on_behalf_of=sender.greeting_name,
            reply_to=circle.action_address(addresses.REPLY, route.token),
            thread=(critique["delivered_message_id"],) if critique["delivered_message_id"] else (),
        )
        self.worker._queue(job, message, "relayed_reply")
        number = critique["id"]
        return f"a reply about critique #{number} relayed from {sender.email} to {receiver.email}"

    def bounce(self, job: Job) -> str:
        """A delivery report: record it against the member it names, never answer it.

        The VERP token in poets+bounce-TOKEN@ names the member; a report that lost it is read
        with Mailman's detectors (flufl.bounce) for the addresses that failed.
        """
        mail, route, circle = job.mail, job.route, job.circle
        assert mail is not None and route is not None and circle is not None
        member = members.by_bounce_token(self.db, route.token) if route.token else None
        raw = job.spooled.raw.decode("utf-8", "replace")
        found = _DSN_STATUS.search(raw)
        status = found.group(1) if found else ""
        if member is not None:
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
        temporary, permanent = _detect(job.spooled.raw)
        outcomes = []
        for address, hard in [(a, True) for a in permanent] + [(a, False) for a in temporary]:
            named = members.find(self.db, circle, address)
            if named is not None:
                outcomes.append(
                    bounces.record(
                        self.db,
                        self.clock,
                        self.composer,
                        circle,
                        named,
                        job.spooled.id,
                        status,
                        hard=hard,
                    )
                )
        if not outcomes:
            raise Ignore(
                "a bounce that names no member (no VERP token, no member's address "
                "found in it); kept"
            )
        return "; ".join(outcomes)

    def _critique_by_token(self, token: str) -> dict[str, Any] | None:
        rows = list(
            self.db.query(
                "SELECT c.*, a.reviewer_id, s.member_id AS author_id, s.title FROM critiques c"
                " JOIN assignments a ON a.id = c.assignment_id"
                " JOIN submissions s ON s.id = a.submission_id WHERE c.token = ?",
                [token],
            )
        )
        return rows[0] if rows else None
