"""The circle's talk: a post to ``poets+talk@`` goes to every member, the way a well-run
list does it.

Each copy is From: "Ann via Poets" at the circle's talk address (DMARC-safe), keeps the
author's Message-ID, In-Reply-To and References (so the conversation threads in every
client), carries the circle's subject tag once and List-Post pointing back at the talk.
Each member chooses how to read it: every post as it comes (``each``), inside the weekly
digest (``digest``), or not at all (``off``). Drafts never go out through talk.
"""

from __future__ import annotations

import email
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.header import decode_header, make_header
from email.message import Message
from typing import Any

from sqlite_utils import Database

from mailcircle import addresses
from mailcircle.circle import assignments, mailing, marks, members
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
    queued = []
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
        queued.append(
            mailing.queue_for_circle(
                db, circle, message, now=now, purpose="talk_post", spool_id=spool_id
            )
        )
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


# --- held posts: moderators are told (a scheduler job, from the spool's state) -------------


def tell_about_held(db: Database, clock: Clock, composer: compose.Composer, circle: Circle) -> int:
    """Tell moderators about talk posts held because their sender is not a member (once
    each), and the sender that their post waits (at most once a week). Idempotent."""
    told = 0
    held = db.execute(
        "SELECT s.id, s.raw FROM spool s WHERE s.status = 'held' AND s.circle_id = ?"
        " AND s.outcome LIKE ? AND NOT EXISTS"
        " (SELECT 1 FROM talk_held_notices n WHERE n.spool_id = s.id) ORDER BY s.id",
        [circle.id, HELD_PREFIX + "%"],
    ).fetchall()
    if held and _may_tell_moderators(db, clock, circle):
        # One notice for all that waits (at most every few hours), never one per post:
        # a flood of posts from strangers must not become a flood to the moderators.
        lines = []
        for spool_id, raw in held[:10]:
            from_addr, subject, _ = _headers_of(raw)
            lines.append(f'  #{spool_id} from {from_addr or "an unknown sender"}: "{subject}"')
        more = f"\n  ... and {len(held) - 10} more" if len(held) > 10 else ""
        told += assignments.tell_moderators(
            db,
            clock,
            composer,
            circle,
            topic=f"{len(held)} talk post(s) from non-members held",
            details=(
                "These were written to the talk by people who are not members; they have "
                "not reached anyone:\n" + "\n".join(lines) + more + "\n\nTo let one "
                f"through, make its sender a member (mailcircle members add {circle.address} "
                "EMAIL) and process it again (mailcircle inbox retry ID). To drop one, do "
                "nothing: it stays held (mailcircle inbox list --status held)."
            ),
        )
    for spool_id, raw in held:
        from_addr, subject, message_id = _headers_of(raw)
        if from_addr and _may_tell_stranger(db, clock, circle, from_addr):
            message = composer.compose(
                circle,
                "talk_held",
                compose.TalkHeld(
                    sender_address=from_addr,
                    circle_name=circle.name,
                    subject=subject,
                    join_address=circle.action_address("join"),
                ),
                to=from_addr,
                thread=(message_id,) if message_id else (),
            )
            mailing.queue_for_circle(
                db, circle, message, now=clock.now(), purpose="talk_held", spool_id=spool_id
            )
            told += 1
        db.execute(
            "INSERT INTO talk_held_notices (spool_id, sent_at) VALUES (?, ?)",
            [spool_id, iso(clock.now())],
        )
    return told


def _headers_of(raw: bytes) -> tuple[str, str, str]:
    """(From address, Subject, Message-ID) of a spooled mail, read with the standard library."""
    message = email.message_from_bytes(raw)
    _, from_addr = addresses.from_header(str(message.get("From", "")))
    subject = str(message.get("Subject", ""))
    try:
        subject = str(make_header(decode_header(subject)))
    except Exception:  # an undecodable encoded-word: keep it as it came
        pass
    found = re.findall(r"<[^<>\s]+>", str(message.get("Message-ID", "")))
    return from_addr, compose.short_subject(subject), found[0] if found else ""


MODERATOR_NOTICE_HOURS = 6  # held talk posts: moderators hear of them at most this often


def _may_tell_moderators(db: Database, clock: Clock, circle: Circle) -> bool:
    now = clock.now()
    since = now - timedelta(hours=MODERATOR_NOTICE_HOURS)
    if marks.marked(db, circle.id, "", "talk_held", since=since):
        return False
    marks.mark(db, circle.id, "", "talk_held", now)
    return True


def _may_tell_stranger(db: Database, clock: Clock, circle: Circle, email: str) -> bool:
    """One automatic answer per stranger per week (shared with 'how to join' notices)."""
    now = clock.now()
    if members.stranger_told_lately(db, circle, email, now):
        return False
    members.remember_stranger_told(db, circle, email, now)
    return True


# --- the digest's share: conversations, milestones, the engagement day --------------------


class TalkWeek:
    """What the digest says about the circle's talk and milestones, read once per run."""

    def __init__(self, db: Database, circle: Circle, now: datetime, names: dict[int, str]):
        self.circle = circle
        week_ago = iso(now - timedelta(days=7))
        self.choices = dict(
            db.execute("SELECT id, talk FROM members WHERE circle_id = ?", [circle.id]).fetchall()
        )
        posts = list(
            db.query(
                "SELECT id, member_id, thread_id, subject, body, word_count, engagement_id"
                " FROM talk_posts WHERE circle_id = ? AND posted_at >= ? ORDER BY id",
                [circle.id, week_ago],
            )
        )
        self.summary, self.full = _conversations(posts, names)
        self.milestones = _milestones(db, circle, week_ago, names)
        self.engagement_day = _engagement_summary(db, circle, now, names)

    def conversations(self, member: Member) -> str:
        """The "Conversations this week" section as this member chose to read the talk."""
        choice = self.choices.get(member.id, EACH)
        return {EACH: self.summary, DIGEST: self.full}.get(choice, "")


def _conversations(posts: list[dict[str, Any]], names: dict[int, str]) -> tuple[str, str]:
    threads: dict[int, list[dict[str, Any]]] = {}
    for post in posts:
        threads.setdefault(post["thread_id"] or post["id"], []).append(post)
    summary, full = [], []
    for number, thread in enumerate(threads.values()):
        if number == LIST_LIMIT:
            more = f"  ... and {len(threads) - LIST_LIMIT} more conversations"
            summary.append(more)
            full.append(more)
            break
        first = thread[0]
        others = len(thread) - 1
        line = (
            f'  "{first["subject"]}", {names.get(first["member_id"], "a former member")}'
            f"{' started it' if first['id'] == (first['thread_id'] or first['id']) else ''}"
            f", {others} repl{'y' if others == 1 else 'ies'} this week"
        )
        summary.append(line)
        full.append(line)
        for post in thread:
            who = names.get(post["member_id"], "a former member")
            if post["word_count"] <= SHORT_POST_WORDS:
                text = "\n".join(f"      {ln}".rstrip() for ln in post["body"].strip().split("\n"))
                full.append(f"    {who} wrote:\n{text}")
            else:
                full.append(
                    f"    {who} wrote {post['word_count']} words (read the talk as it comes"
                )
                full[-1] += " with +talk-each to get long posts whole)"
    return "\n".join(summary), "\n".join(full)


def _milestones(db: Database, circle: Circle, week_ago: str, names: dict[int, str]) -> str:
    """A member's first draft, every fifth critique given, thanks received, a draft revised
    and sent again: one plain line each, never a ranking."""
    lines: list[str] = []
    firsts = db.execute(
        "SELECT s.member_id, s.title FROM submissions s WHERE s.circle_id = ?"
        " AND s.submitted_at >= ? AND NOT EXISTS (SELECT 1 FROM submissions p"
        " WHERE p.member_id = s.member_id AND p.id < s.id) ORDER BY s.id",  # this week's only
        [circle.id, week_ago],
    ).fetchall()
    for member_id, title in firsts:
        if member_id in names:
            lines.append(f'  {names[member_id]} shared a first draft with the circle: "{title}".')
    for member_id, title in db.execute(
        "SELECT member_id, MAX(title) FROM submissions WHERE circle_id = ?"
        " GROUP BY member_id, lower(trim(title)) HAVING COUNT(*) > 1 AND MAX(submitted_at) >= ?"
        " ORDER BY MIN(id)",
        [circle.id, week_ago],
    ).fetchall():
        if member_id in names:
            lines.append(f'  {names[member_id]} revised "{title}" and sent it again.')
    for reviewer, total, recent in db.execute(
        "SELECT a.reviewer_id, COUNT(*), SUM(c.received_at >= ?) FROM critiques c"
        " JOIN assignments a ON a.id = c.assignment_id JOIN rounds r ON r.id = a.round_id"
        " WHERE r.circle_id = ? GROUP BY a.reviewer_id ORDER BY a.reviewer_id",
        [week_ago, circle.id],
    ).fetchall():
        if recent and reviewer in names and total // 5 > (total - recent) // 5:
            lines.append(f"  {names[reviewer]} has now given {total // 5 * 5} critiques.")
    for reviewer, thanked in db.execute(
        "SELECT a.reviewer_id, COUNT(*) FROM critiques c"
        " JOIN assignments a ON a.id = c.assignment_id JOIN rounds r ON r.id = a.round_id"
        " WHERE r.circle_id = ? AND c.thanked_at >= ? GROUP BY a.reviewer_id"
        " ORDER BY a.reviewer_id",
        [circle.id, week_ago],
    ).fetchall():
        if reviewer in names:
            times = "a critique" if thanked == 1 else f"{thanked} critiques"
            lines.append(f"  {names[reviewer]} was thanked for {times}.")
    return "\n".join(lines[:LIST_LIMIT])


def _engagement_summary(db: Database, circle: Circle, now: datetime, names: dict[int, str]) -> str:
    """The engagement days of the past week: who took part, the threads, drafts discussed."""
    today = now.astimezone(circle.config.zone).date()
    parts = []
    for day in db.query(
        "SELECT * FROM engagement_days WHERE circle_id = ? AND day >= ? AND day < ? ORDER BY day",
        [circle.id, (today - timedelta(days=7)).isoformat(), today.isoformat()],
    ):
        posts = list(
            db.query(
                "SELECT member_id, thread_id, id, subject, body FROM talk_posts"
                " WHERE engagement_id = ? ORDER BY id",
                [day["id"]],
            )
        )
        when = date.fromisoformat(day["day"]).strftime("%A %-d %B")
        came = db.execute(
            "SELECT COUNT(*) FROM engagement_rsvps WHERE engagement_id = ? AND answer = 'yes'",
            [day["id"]],
        ).fetchone()[0]
        if not posts:
            parts.append(f'  {when}, "{day["topic"]}": {came} said yes; nobody wrote that day.')
            continue
        people = sorted({names.get(p["member_id"], "a former member") for p in posts})
        threads: dict[int, list[dict[str, Any]]] = {}
        for post in posts:
            threads.setdefault(post["thread_id"] or post["id"], []).append(post)
        listed = "; ".join(
            f'"{t[0]["subject"]}" ({len(t)} post{"" if len(t) == 1 else "s"})'
            for t in threads.values()
        )
        said = " ".join(f"{p['subject']} {p['body']}" for p in posts).lower()
        discussed = [f'"{t}"' for t in last_round_titles(db, circle) if t.lower() in said]
        parts.append(
            f'  {when}, "{day["topic"]}": {len(posts)} post{"" if len(posts) == 1 else "s"}'
            f" by {_and(people)}.\n  Threads: {listed}\n"
            f"  Drafts discussed: {_and(discussed) if discussed else 'none by name'}"
        )
    return "\n".join(parts)


def last_round_titles(db: Database, circle: Circle) -> list[str]:
    return [
        title
        for (title,) in db.execute(
            "SELECT s.title FROM submissions s WHERE s.id IN (SELECT a.submission_id FROM"
            " assignments a WHERE a.round_id = (SELECT r.id FROM rounds r WHERE r.circle_id = ?"
            " AND EXISTS (SELECT 1 FROM assignments a2 WHERE a2.round_id = r.id)"
            " ORDER BY r.number DESC LIMIT 1)) ORDER BY s.id",
            [circle.id],
        ).fetchall()
    ]


def _and(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
