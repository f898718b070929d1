"""The pipeline's talk step: a member's post to poets+talk@ (or a reply to a talk post that
was sent to the circle's own address) goes to everyone through ``circle/talk.py``.

A post from an address that is not a member is held for a moderator (the scheduler tells
them, and the sender); a post carrying a manuscript, too big an attachment or a draft's
length is sent back with where drafts go. Automatic mail never gets here: the route step
has already set it aside.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailcircle import addresses
from mailcircle.circle import members, talk
from mailcircle.errors import Duplicate, Hold, Refuse
from mailcircle.inbound.route import COMMAND, DRAFT
from mailcircle.inbound.stage import Stage
from mailcircle.outbound import compose

if TYPE_CHECKING:
    from mailcircle.inbound.job import Job


class Talk(Stage):
    def is_post(self, job: Job) -> bool:
        """Whether the mail is a talk post: to poets+talk@, or to the circle's address in
        answer to a talk post or an engagement day's kick-off."""
        route, mail, circle = job.route, job.mail, job.circle
        if route.kind == COMMAND:
            return route.action == addresses.TALK and not route.token
        if route.kind == DRAFT and (mail.in_reply_to or mail.references):
            return talk.answers_talk(self.db, circle, (*mail.references, mail.in_reply_to))
        return False

    def take(self, job: Job) -> str | None:
        if not self.is_post(job):
            return None
        mail, circle = job.mail, job.circle
        member = members.find(self.db, circle, mail.from_addr) if mail.from_addr else None
        if member is None:
            raise Hold(
                f"{talk.HELD_PREFIX} {mail.from_addr or 'an unknown sender'}, who is not a "
                "member; held for a moderator, and not sent to anyone"
            )
        job.answer_to = member.email
        self.senders.require(job, member, "a talk post")
        attachments = tuple((a.filename, a.content_type, a.payload) for a in mail.attachments)
        reason = talk.why_not(circle, mail.text, attachments)
        if reason:
            raise Refuse(
                f"a talk post from {member.email} not sent on: {reason}",
                template="talk_refused",
                context=compose.TalkRefused(
                    member_name=member.greeting_name,
                    circle_name=circle.name,
                    subject=mail.subject or "(no subject)",
                    reason=reason,
                    circle_address=circle.address,
                    talk_address=talk.address(circle),
                ),
            )
        message_id = mail.message_id or talk.new_message_id(circle)
        earlier = talk.find_post(self.db, circle, (message_id,))
        if earlier is not None:
            raise Duplicate(f"already sent to the circle as talk post #{earlier['id']}")
        post_id, queued = talk.distribute(
            self.db,
            self.clock,
            self.composer,
            circle,
            member,
            talk.Post(
                message_id=message_id,
                subject=mail.subject,
                body=mail.text,
                in_reply_to=mail.in_reply_to,
                references=mail.references,
                attachments=attachments,
            ),
            spool_id=job.spooled.id,
        )
        job.queued.extend(queued)
        return (
            f"talk post #{post_id} {mail.subject!r} from {member.email} sent to "
            f"{len(queued)} member{'' if len(queued) == 1 else 's'}"
        )
