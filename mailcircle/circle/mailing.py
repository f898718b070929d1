"""Mail the circle sends to one address: from its VERP bounce address for that member.

The circle layer knows members and their bounce tokens; the outbox below only stores what
it is given. Queue through here, in the transaction of the change that causes the mail.
"""

from __future__ import annotations

from datetime import datetime
from email.message import Message

from sqlite_utils import Database

from mailcircle.circle.circles import Circle
from mailcircle.circle.members import bounce_address, find
from mailcircle.outbound import outbox


def queue_for_circle(
    db: Database,
    circle: Circle,
    message: Message,
    *,
    now: datetime,
    purpose: str,
    spool_id: int | None = None,
) -> int:
    """Queue a mail the circle sends, from its VERP address for the recipient.

    Nothing is queued for a member whose mail is paused because it bounces (returns 0),
    except the moderators' own notices.
    """
    rcpt = outbox.recipient_of(message)
    member = find(db, circle, rcpt, include_left=True)  # one look-up serves both questions
    if member is not None and member.status == "bouncing" and purpose != "moderator_notice":
        return 0
    return outbox.queue(
        db,
        message,
        now=now,
        circle_id=circle.id,
        purpose=purpose,
        mail_from=bounce_address(db, circle, rcpt, member=member),
        spool_id=spool_id,
    )
