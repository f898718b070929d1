"""The circle's talk: a post to ``poets+talk@`` goes to every member, the way a well-run
list does it.

Each copy is From: "Ann via Poets" at the circle's talk address (DMARC-safe), keeps the
author's Message-ID, In-Reply-To and References (so the conversation threads in every
client), carries the circle's subject tag once and List-Post pointing back at the talk.
Each member chooses how to read it: every post as it comes (``each``), inside the weekly
digest (``digest``), or not at all (``off``). Drafts never go out through talk.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from typing import Any

from sqlite_utils import Database

from mailcircle import addresses
from mailcircle.circle import mailing, members
from mailcircle.circle.circles import Circle
from mailcircle.circle.members import Member
from mailcircle.clock import Clock, iso
from mailcircle.outbound import compose
from mailcircle.rows import new_id
from mailcircle.text import REPLY_WORDS

EACH, DIGEST, OFF = "each", "digest", "off"
CHOICES = (EACH, DIGEST, OFF)
SELF, NOSELF = "self", "noself"

# An attachment with one of these endings is a manuscript: drafts go to the circle's address.
MANUSCRIPT_SUFFIXES = (".docx", ".doc", ".odt", ".rtf", ".pdf", ".txt", ".md", ".markdown")
SHORT_POST_WORDS = 150  # posts up to this long are quoted whole in the digest
LIST_LIMIT = 40  # conversations in one digest; the rest are counted
HELD_PREFIX = "a talk post from"  # how a held post's outcome starts (the scheduler finds it)

_REPLY_WORDS = f"(?:{'|'.join(REPLY_WORDS)})"  # not Fwd: (a forward is a new post)


@dataclass(frozen=True)
class Post:
    """What a member sent to the talk, as the distribution needs it."""

    message_id: str
    subject: str
    body: str
    in_reply_to: str
    references: tuple[str, ...]
    attachments: tuple[tuple[str, str, bytes], ...]  # (filename, content type, bytes)


def address(circle: Circle) -> str:
    return circle.action_address(addresses.TALK)


def tag(circle: Circle) -> str:
    """The subject tag: the setting, else the circle's name in brackets; '' for 'none'."""
    setting = circle.config.talk_subject_tag.strip()
    if setting.lower() == "none":
        return ""
    return setting or f"[{circle.name}]"


def base_subject(subject: str, circle_tag: str) -> tuple[str, bool]:
    """(the subject without its leading Re:/AW: prefixes and tags, whether it was a reply).
    One anchored pass: linear however many prefixes a long thread has piled up."""
    text = " ".join(subject.split())
    tag_part = f"|{re.escape(circle_tag)}" if circle_tag else ""
    lead = re.match(rf"(?:\s*(?:{_REPLY_WORDS}\s*:{tag_part}))+", text, re.IGNORECASE)
    if lead is None:
        return text, False
    prefix = lead.group(0)
    if circle_tag:
        prefix = re.sub(re.escape(circle_tag), "", prefix, flags=re.IGNORECASE)
    return text[lead.end() :].strip(), bool(prefix.strip())


def tagged_subject(subject: str, circle_tag: str) -> str:
    """'Re: [Poets] Readings' from 'Re: [Poets] Re: Readings', never the tag twice."""
    base, reply = base_subject(subject, circle_tag)
    base = base or "(no subject)"
    tagged = f"{circle_tag} {base}" if circle_tag else base
    return f"Re: {tagged}" if reply else tagged


def words(text: str) -> int:
    return len(text.split())


def why_not(circle: Circle, body: str, attachments: tuple[tuple[str, str, bytes], ...]) -> str:
    """Why a post cannot go to everyone ('' when it can): a pure check of what it carries."""
    config = circle.config
    for filename, _, payload in attachments:
        if filename.lower().endswith(MANUSCRIPT_SUFFIXES):
            return (
                f"It carries {filename}, which looks like a draft. Drafts never go out through "
                f"the talk: send it to {circle.address} and it goes to a few members to "
                "critique in the next round."
            )
        if len(payload) > config.talk_max_attachment_kb * 1024:
            return (
                f"Its attachment {filename or '(unnamed)'} is {len(payload) // 1024} KB; the "
                f"talk carries attachments of up to {config.talk_max_attachment_kb} KB. "
                "Please send a smaller file, or a link."
            )
    if words(body) > config.talk_max_words:
        return (
            f"It is {words(body)} words long, which reads like a draft (the talk takes posts "
            f"of up to {config.talk_max_words} words). Drafts go to {circle.address}, where "
            "a few members critique them in the next round."
        )
    if not body.strip() and not attachments:
        return "It was empty: write your post in the message itself."
    return ""


def choice_of(db: Database, member_id: int) -> tuple[str, bool]:
    """(how the member reads the talk, whether they get their own posts)."""
    row = db.execute("SELECT talk, talk_self FROM members WHERE id = ?", [member_id]).fetchone()
    return (row[0], bool(row[1])) if row else (EACH, False)


def set_choice(db: Database, member_id: int, choice: str) -> None:
    assert choice in CHOICES
    db.execute("UPDATE members SET talk = ? WHERE id = ?", [choice, member_id])


def set_own_copies(db: Database, member_id: int, on: bool) -> None:
    db.execute("UPDATE members SET talk_self = ? WHERE id = ?", [int(on), member_id])


def find_post(db: Database, circle: Circle, message_ids: tuple[str, ...]) -> dict[str, Any] | None:
    """The talk post one of these Message-IDs is (the newest named first), if any."""
    for message_id in reversed([m for m in message_ids if m]):
        rows = list(
            db.query(
                "SELECT * FROM talk_posts WHERE message_id = ? AND circle_id = ?",
                [message_id, circle.id],
            )
        )
        if rows:
            return dict(rows[0])
    return None


def answers_talk(db: Database, circle: Circle, message_ids: tuple[str, ...]) -> bool:
    """Whether a mail answering these Message-IDs answers a talk post or a kick-off."""
    if find_post(db, circle, message_ids) is not None:
        return True
    wanted = [m for m in message_ids if m]
    if not wanted:
        return False
    marks = ", ".join("?" * len(wanted))
    return (
        db.execute(
            "SELECT 1 FROM engagement_days WHERE circle_id = ? AND kickoff_message_id IN"
            f" ({marks})",
            [circle.id, *wanted],
        ).fetchone()
        is not None
    )


def todays_engagement(db: Database, circle: Circle, now: datetime) -> dict[str, Any] | None:
    today = now.astimezone(circle.config.zone).date().isoformat()
    rows = list(
        db.query(
            "SELECT * FROM engagement_days WHERE circle_id = ? AND day = ? ORDER BY id LIMIT 1",
            [circle.id, today],
        )
    )
    return dict(rows[0]) if rows else None


def distribute(
    db: Database,
    clock: Clock,
    composer: compose.Composer,
    circle: Circle,
    author: Member,
    post: Post,
    *,
    spool_id: int,
) -> tuple[int, list[int]]:
    """Record a post and queue one copy for every member who reads the talk as it comes.

    Returns (the post's id, the outbox ids). Call inside the transaction taking the mail.
    """
    now = clock.now()
    parent = find_post(db, circle, (*post.references, post.in_reply_to))
    day = todays_engagement(db, circle, now)
    base, _ = base_subject(post.subject, tag(circle))
    context_for = {
        "author_name": author.greeting_name,
        "circle_name": circle.name,
        "subject": tagged_subject(post.subject, tag(circle)),
        "body": post.body.rstrip(),
        "engagement_topic": day["topic"] if day else "",
        "talk_address": address(circle),
        "digest_address": circle.action_address(addresses.TALK, DIGEST),
        "off_address": circle.action_address(addresses.TALK, OFF),
        "attachments": ", ".join(name for name, _, _ in post.attachments if name),
    }
    copies = []  # composed before anything is written: the write lock waits for no template
    for reader in readers(db, circle, author):
        message = composer.compose(
            circle,
            "talk_post",
            compose.TalkPost(**context_for),
            to=reader.email,
            automatic=False,
            reply_to=author.email if circle.config.talk_reply_to == "author" else address(circle),
            precedence="list",
            attachments=post.attachments,
        )
        as_list_mail(message, circle, author.greeting_name)
        keep_thread(message, post.message_id, post.in_reply_to, post.references)
        copies.append(message)
    post_id = new_id(
        db.table("talk_posts").insert(
            {
                "circle_id": circle.id,
                "member_id": author.id,
                "spool_id": spool_id,
                "message_id": post.message_id,
                "parent_id": parent["id"] if parent else None,
                "thread_id": parent["thread_id"] if parent else None,
                "subject": base or "(no subject)",
                "body": post.body,
                "word_count": words(post.body),
                "engagement_id": day["id"] if day else None,
                "posted_at": iso(now),
            }
        )
    )
    if parent is None:
        db.execute("UPDATE talk_posts SET thread_id = id WHERE id = ?", [post_id])
    queued = [
        mailing.queue_for_circle(
            db, circle, message, now=now, purpose="talk_post", spool_id=spool_id
        )
        for message in copies
    ]
    return post_id, [q for q in queued if q]


def readers(db: Database, circle: Circle, author: Member) -> list[Member]:
    """Active members reading the talk as it comes; the author only if they asked."""
    found = []
    for row in db.query(
        "SELECT * FROM members WHERE circle_id = ? AND status = ? AND talk = ? ORDER BY email",
        [circle.id, members.ACTIVE, EACH],
    ):
        if row["id"] == author.id and not row["talk_self"]:
            continue
        found.append(members.Member.from_row(row))
    return found


def as_list_mail(message: Message, circle: Circle, author_name: str = "") -> None:
    """Make a composed mail talk mail: From: and List-Post at the talk address, and
    List-Unsubscribe leaving the talk (not the circle)."""
    sender = f"{author_name} via {circle.name}" if author_name else circle.name
    message.replace_header("From", compose.display_address(sender, address(circle)))
    message.replace_header("List-Post", f"<mailto:{address(circle)}>")
    message.replace_header(
        "List-Unsubscribe", f"<mailto:{circle.action_address(addresses.TALK, OFF)}>"
    )
    del message["List-Unsubscribe-Post"]  # one-click needs an HTTPS URL (RFC 8058)


def keep_thread(
    message: Message, message_id: str, in_reply_to: str, references: tuple[str, ...]
) -> None:
    """Give a copy the post's own Message-ID, In-Reply-To and References."""
    message.replace_header("Message-ID", message_id)
    del message["In-Reply-To"]
    del message["References"]
    chain = references or ((in_reply_to,) if in_reply_to else ())
    if in_reply_to or chain:
        message["In-Reply-To"] = in_reply_to or chain[-1]
        message["References"] = " ".join(chain)


def new_message_id(circle: Circle) -> str:
    return f"<talk.{secrets.token_hex(10)}@{circle.domain}>"
