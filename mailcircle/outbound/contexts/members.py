"""Template contexts: joining, leaving and answers to members and strangers.

One frozen dataclass per template; a test checks each template uses exactly its fields.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NotAMember:
    """not_a_member.txt: a draft or command came from an address that is not a member."""

    sender_address: str
    circle_name: str
    circle_address: str
    subject: str
    join_address: str


@dataclass(frozen=True)
class ProcessingFailed:
    """processing_failed.txt: the circle could not process a mail; it is kept for a moderator."""

    circle_name: str
    subject: str
    help_address: str


@dataclass(frozen=True)
class UnreadableAttachment:
    """unreadable_attachment.txt: a member's attached draft is too big to read."""

    circle_name: str
    subject: str
    reason: str  # one sentence: what was too big, and the limit
    help_address: str


@dataclass(frozen=True)
class Help:
    """help.txt: what the circle's addresses do (the answer to +help and to unknown words)."""

    circle_name: str
    circle_address: str
    request_address: str  # poets+request@: commands in the subject
    join_address: str
    not_understood: str  # the word we did not understand, '' when +help was asked for
    talk_address: str = ""  # poets+talk@, '' to leave the talk commands out


@dataclass(frozen=True)
class JoinConfirm:
    """join_confirm.txt: someone asked to join; only the owner of the address can confirm."""

    circle_name: str
    email: str
    confirm_address: str


@dataclass(frozen=True)
class Welcome:
    """welcome.txt: a new member is in."""

    member_name: str
    circle_name: str
    circle_address: str
    help_address: str
    next_round: str


@dataclass(frozen=True)
class LeaveConfirm:
    """leave_confirm.txt: a member asked to leave; they confirm by replying."""

    member_name: str
    circle_name: str
    confirm_address: str


@dataclass(frozen=True)
class Goodbye:
    """goodbye.txt: a member has left."""

    member_name: str
    circle_name: str
    join_address: str


@dataclass(frozen=True)
class PauseAnswer:
    """pause_answer.txt: a member paused or resumed."""

    member_name: str
    circle_name: str
    paused: bool  # True: now paused; False: back in the rotation
    passed_on: int  # open assignments handed to backups on pausing
    other_address: str  # +resume when paused, +pause when resumed


@dataclass(frozen=True)
class StatusAnswer:
    """status.txt: a member's open assignments, queued drafts and give/take standing."""

    member_name: str
    circle_name: str
    member_status: str  # active, paused
    assignments: str  # one line each, '' if none
    drafts: str  # one line each, '' if none
    held_back: bool
    participation_needed: int
    participation_window: int
    next_round: str
    talk: str = "each"  # how they read the circle's talk: each, digest, off
    talk_address: str = ""  # poets+talk@
    timezone: str = "UTC"  # the member's own time zone
    zone_offer: str = ""  # a sentence offering the zone their mail's Date: suggests, '' if none


@dataclass(frozen=True)
class ConfirmSender:
    """confirm_sender.txt: mail from a member's address could not be verified; did they send it?"""

    member_name: str
    circle_name: str
    what: str  # "a draft", "a critique", "a pause" ...
    subject: str  # the held mail's subject, shortened
    confirm_address: str  # poets+confirm-TOKEN@ (also the Reply-To)


@dataclass(frozen=True)
class NoteAnswer:
    """note_answer.txt: a reply to one of our mails is kept as a note; where things go."""

    member_name: str
    circle_name: str
    answered: str  # "the acknowledgement of your draft" ...
    circle_address: str
    help_address: str


@dataclass(frozen=True)
class LoopPaused:
    """loop_paused.txt: a member's mailbox kept answering the circle's mail; paused."""

    member_name: str
    circle_name: str
    count: int  # automatic answers in a day
    resume_address: str  # poets+resume@


@dataclass(frozen=True)
class MemberSetting:
    """member_setting.txt: a member set (or tried to set) their time zone or name."""

    member_name: str
    circle_name: str
    setting: str  # "time zone" or "name"
    value: str  # the new value, or what they sent when it could not be used
    problem: str  # why it could not be used, '' when it was set
    local_now: str  # the time now in their zone, in words ('' for a name)
    command_address: str  # the address to try again
