"""The talk's share of the weekly digest: the week's conversations, the circle's
milestones and the engagement day."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlite_utils import Database

from mailcircle.circle.circles import Circle
from mailcircle.circle.members import Member
from mailcircle.circle.talk import DIGEST, EACH, LIST_LIMIT, SHORT_POST_WORDS
from mailcircle.clock import iso


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
