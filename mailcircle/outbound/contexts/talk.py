"""Template contexts: the circle's talk, digests and engagement days.

One frozen dataclass per template; a test checks each template uses exactly its fields.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Digest:
    """digest.txt: a member's weekly digest (with digest.html). Never quotes a draft."""

    member_name: str
    circle_name: str
    week: str  # "the week to Sunday 8 March"
    drafts_out: str  # one line per draft of the latest round: title, author, words, readers
    critiques_delivered: str  # one line per critique delivered this week
    your_assignments: str  # one line per open assignment with its due date
    given: int  # critiques this member gave in recent rounds
    received: int  # critiques this member received in recent rounds
    held_back: bool  # their drafts wait until they catch up
    participation_needed: int
    participation_window: int
    thanks_received: int  # authors who answered this member's critiques this week
    generous: str  # members who stepped in as backups this week, '' if none
    next_round: str
    engagement: str  # the next engagement day and its topic, '' if none
    rsvp_address: str  # where to say yes to it
    pause_address: str
    leave_address: str
    digest_off_address: str
    conversations: str = ""  # "Conversations this week", by the member's talk choice; ''
    milestones: str = ""  # one line per milestone worth a smile this week, '' if none
    engagement_day: str = ""  # what happened on an engagement day this week, '' if none
    talk_address: str = ""  # poets+talk@


@dataclass(frozen=True)
class RsvpAnswer:
    """rsvp_answer.txt: a member said yes or no to an engagement day."""

    member_name: str
    circle_name: str
    day: str
    topic: str
    coming: bool


@dataclass(frozen=True)
class Agenda:
    """agenda.txt: the day before an engagement day, for those who said yes."""

    member_name: str
    circle_name: str
    day: str
    topic: str
    drafts: str  # one line per draft to discuss, with the author's questions


@dataclass(frozen=True)
class DigestAnswer:
    """digest_answer.txt: a member turned their weekly digest on or off."""

    member_name: str
    circle_name: str
    on: bool
    other_address: str  # +digest-off when on, +digest-on when off


@dataclass(frozen=True)
class TalkPost:
    """talk_post.txt: one member's post to the circle's talk, a copy for each reader."""

    author_name: str
    circle_name: str
    subject: str  # the author's subject, tagged once: "Re: [Poets] ..."
    body: str  # the author's words, exactly as written
    engagement_topic: str  # the engagement day this post is part of, '' if none
    talk_address: str  # poets+talk@: replies go to everyone
    digest_address: str  # poets+talk-digest@: read the talk in the digest instead
    off_address: str  # poets+talk-off@
    attachments: str  # names of attached files, comma separated, '' if none


@dataclass(frozen=True)
class TalkRefused:
    """talk_refused.txt: a member's post to the talk was not sent on, and why."""

    member_name: str
    circle_name: str
    subject: str
    reason: str  # one or two sentences: what to do instead
    circle_address: str  # where drafts go
    talk_address: str


@dataclass(frozen=True)
class TalkHeld:
    """talk_held.txt: a post to the talk from an address that is not a member waits."""

    sender_address: str
    circle_name: str
    subject: str
    join_address: str


@dataclass(frozen=True)
class TalkChoice:
    """talk_choice.txt: a member chose how to read the circle's talk."""

    member_name: str
    circle_name: str
    choice: str  # each, digest, off
    own_copies: bool  # they get a copy of their own posts
    digest_turned_on: bool  # choosing the digest turned their weekly digest back on
    talk_address: str
    each_address: str
    digest_address: str
    off_address: str
    self_address: str  # +talk-self when off, +talk-noself when on
    zone_offer: str  # a sentence offering the zone their mail's Date: suggests, '' if none


@dataclass(frozen=True)
class EngagementKickoff:
    """engagement_kickoff.txt: the morning of an engagement day, for those who said yes."""

    member_name: str
    circle_name: str
    day: str
    topic: str
    agenda: str  # one line per item moderators added, '' if none
    drafts: str  # one line per draft of the last round, with its author's questions
    talk_address: str  # where the day's conversation happens


@dataclass(frozen=True)
class AgendaAnswer:
    """agenda_answer.txt: a moderator added an item to an engagement day (or could not)."""

    member_name: str
    circle_name: str
    item: str
    day: str  # the engagement day, in words; '' if none is planned
    topic: str
    problem: str  # why it was not added, '' when it was
