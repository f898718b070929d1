"""Template contexts: drafts, rounds and critiques.

One frozen dataclass per template; a test checks each template uses exactly its fields.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SubmissionAck:
    """submission_ack.txt: a member's draft is queued for the next round."""

    member_name: str  # what to call the author
    circle_name: str
    title: str  # the draft's title, from the subject
    word_count: int
    asks: str  # the author's questions for reviewers, '' if none
    queue_position: int  # 1 = next in line
    next_round: str  # when the next round starts, in words
    help_address: str  # poets+help@...
    max_words: int  # the circle's word limit
    too_long: bool  # the draft is over max_words and will wait
    held_back: bool  # the author takes without giving: their drafts wait until they catch up
    participation_needed: int  # e.g. critiqued in 3 ...
    participation_window: int  # ... of the last 4 rounds


@dataclass(frozen=True)
class Assignment:
    """assignment.txt: a member is asked to critique a draft (or to step in as a backup)."""

    reviewer_name: str
    author_name: str
    circle_name: str
    title: str
    word_count: int
    asks: str  # the author's questions, '' if none
    draft: str  # the draft itself, exactly as written
    due: str  # the due date in the reviewer's time zone, in words
    backup: bool  # standing in for a reviewer who could not
    attachments: str  # names of attached files, comma separated, '' if none


@dataclass(frozen=True)
class Reminder:
    """reminder.txt: an open assignment is due soon."""

    reviewer_name: str
    author_name: str
    circle_name: str
    title: str
    due: str


@dataclass(frozen=True)
class CritiqueDelivery:
    """critique_delivery.txt: a critique of the author's draft, relayed by the circle."""

    author_name: str
    reviewer_name: str
    circle_name: str
    title: str
    critique: str  # the reviewer's own words, quotes and signature trimmed
    late: bool


@dataclass(frozen=True)
class CritiqueReceipt:
    """critique_receipt.txt: the reviewer's critique reached the author."""

    reviewer_name: str
    author_name: str
    circle_name: str
    title: str
    late: bool


@dataclass(frozen=True)
class ModeratorNotice:
    """moderator_notice.txt: something the circle's moderators should know."""

    moderator_name: str
    circle_name: str
    topic: str  # one line, used as the subject
    details: str  # what happened and what they might do


@dataclass(frozen=True)
class EmptyDraft:
    """empty_draft.txt: a member's mail to the circle had no draft in it."""

    member_name: str
    circle_name: str
    circle_address: str
    subject: str
    help_address: str


@dataclass(frozen=True)
class CritiqueClosed:
    """critique_closed.txt: a critique came for an assignment that no longer takes one."""

    reviewer_name: str
    circle_name: str
    title: str
    reason: str  # "the work passed to another reviewer" ...


@dataclass(frozen=True)
class RelayedReply:
    """relayed_reply.txt: an author's answer to a critique, passed to its reviewer."""

    reviewer_name: str
    author_name: str
    circle_name: str
    title: str
    words: str  # the author's own words
