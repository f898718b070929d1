"""The context of every template: a documented dataclass per template name.

``CONTEXTS`` maps a template name (``templates/NAME.txt``) to its dataclass; the composer
refuses any other context, and a test checks each template uses exactly its fields. The
dataclasses live in three modules by what the mail is about; import them from here.
"""

from __future__ import annotations

import typing

from mailcircle.outbound.contexts.members import (
    ConfirmSender,
    Goodbye,
    Help,
    JoinConfirm,
    LeaveConfirm,
    LoopPaused,
    MemberSetting,
    NotAMember,
    NoteAnswer,
    PauseAnswer,
    ProcessingFailed,
    StatusAnswer,
    UnreadableAttachment,
    Welcome,
)
from mailcircle.outbound.contexts.rounds import (
    Assignment,
    CritiqueClosed,
    CritiqueDelivery,
    CritiqueReceipt,
    EmptyDraft,
    ModeratorNotice,
    RelayedReply,
    Reminder,
    SubmissionAck,
)
from mailcircle.outbound.contexts.talk import (
    Agenda,
    AgendaAnswer,
    Digest,
    DigestAnswer,
    EngagementKickoff,
    RsvpAnswer,
    TalkChoice,
    TalkHeld,
    TalkPost,
    TalkRefused,
)

__all__ = [
    "Agenda",
    "AgendaAnswer",
    "Assignment",
    "CONTEXTS",
    "ConfirmSender",
    "CritiqueClosed",
    "CritiqueDelivery",
    "CritiqueReceipt",
    "Digest",
    "DigestAnswer",
    "EmptyDraft",
    "EngagementKickoff",
    "Goodbye",
    "Help",
    "JoinConfirm",
    "LeaveConfirm",
    "LoopPaused",
    "MemberSetting",
    "ModeratorNotice",
    "NotAMember",
    "NoteAnswer",
    "PauseAnswer",
    "ProcessingFailed",
    "RelayedReply",
    "Reminder",
    "RsvpAnswer",
    "StatusAnswer",
    "SubmissionAck",
    "TalkChoice",
    "TalkHeld",
    "TalkPost",
    "TalkRefused",
    "UnreadableAttachment",
    "Welcome",
    "sample_context",
]

CONTEXTS: dict[str, type] = {
    "digest": Digest,
    "digest_answer": DigestAnswer,
    "rsvp_answer": RsvpAnswer,
    "agenda": Agenda,
    "help": Help,
    "join_confirm": JoinConfirm,
    "welcome": Welcome,
    "leave_confirm": LeaveConfirm,
    "goodbye": Goodbye,
    "pause_answer": PauseAnswer,
    "status": StatusAnswer,
    "relayed_reply": RelayedReply,
    "assignment": Assignment,
    "reminder": Reminder,
    "critique_delivery": CritiqueDelivery,
    "critique_receipt": CritiqueReceipt,
    "moderator_notice": ModeratorNotice,
    "processing_failed": ProcessingFailed,
    "submission_ack": SubmissionAck,
    "not_a_member": NotAMember,
    "empty_draft": EmptyDraft,
    "confirm_sender": ConfirmSender,
    "note_answer": NoteAnswer,
    "critique_closed": CritiqueClosed,
    "loop_paused": LoopPaused,
    "unreadable_attachment": UnreadableAttachment,
    "talk_post": TalkPost,
    "talk_refused": TalkRefused,
    "talk_held": TalkHeld,
    "talk_choice": TalkChoice,
    "member_setting": MemberSetting,
    "engagement_kickoff": EngagementKickoff,
    "agenda_answer": AgendaAnswer,
}


def sample_context(name: str) -> object:
    """A context for template ``name`` filled with sample values (for previews and tests)."""
    context_type = CONTEXTS[name]
    hints = typing.get_type_hints(context_type)
    samples = {
        field: f"<{field}>" if kind is str else 3 if kind is int else True
        for field, kind in hints.items()
    }
    return context_type(**samples)
