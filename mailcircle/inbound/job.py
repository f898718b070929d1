"""What the spool hands the pipeline (a spooled mail), and the job a mail becomes on its
way through the steps: what each step learned, and the mails the mail causes.

Steps never queue mail themselves: they ``job.send`` it, and the pipeline queues it (within
the caps on answers) when the mail's outcome is recorded, in the same short write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from mailcircle.circle.circles import Circle
from mailcircle.inbound.route import Route
from mailcircle.inbound.verify import Verdict
from mailcircle.mail import Mail
from mailcircle.outbound import sent


@dataclass(frozen=True)
class Spooled:
    """One received mail for one circle address, as the spool keeps it."""

    id: int
    received_at: str
    source: str
    peer: str
    mail_from: str
    rcpt_to: str
    circle_id: int | None
    message_id: str
    dedupe_key: str
    size: int
    raw: bytes
    status: str
    outcome: str
    error: str
    attempts: int
    processed_at: str | None
    started: int = 0  # processing started and did not finish (a crash counts)
    crashes: int = 0  # the worker process died while on this mail

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Spooled:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass
class Job:
    """One spooled mail for one circle on its way through the steps."""

    spooled: Spooled
    mail: Mail
    circle: Circle
    route: Route
    earlier: int | None = None  # an earlier copy of the same mail that was dealt with
    assignment: dict[str, Any] | None = None  # set when the mail answers an assignment
    answering: sent.SentMail | None = None  # the mail of ours it replies to, when known
    answer_to: str = ""  # who a refusal goes to; '' when nobody may be answered
    verdict: Verdict | None = None  # whether the From: address is proven (see senders.py)
    confirmed: bool = False  # a held mail released by its member or a moderator
    mails: list[tuple[Message, str]] = field(default_factory=list)  # to send, why
    queued: list[int] = field(default_factory=list)  # outbox ids, once queued
    silenced: list[str] = field(default_factory=list)  # answers not sent: the cap

    def send(self, message: Message, purpose: str) -> None:
        """A mail this mail causes: queued with its outcome (answers within the cap)."""
        self.mails.append((message, purpose))

    def forget(self) -> None:
        """The steps' changes were rolled back: so are the mails they meant to send."""
        self.mails.clear()
        self.queued.clear()
        self.silenced.clear()
