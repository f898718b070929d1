"""What a round is planned from: the circle's settings, the queued drafts, the active
members and who reviewed whom lately, read from the database in one snapshot.
"""

from __future__ import annotations

import functools

from sqlite_utils import Database

from mailcircle.circle import members
from mailcircle.circle.assign import PastAssignment, QueuedDraft, RoundInput, RoundSettings
from mailcircle.circle.assigning import OPEN
from mailcircle.circle.circles import Circle
from mailcircle.circle.settings import CircleSettings

HISTORY_ROUNDS = 12


def round_settings(circle: Circle) -> RoundSettings:
    c = circle.config
    return RoundSettings(
        reviews_per_draft=c.reviews_per_draft,
        max_reviews_per_round=c.max_reviews_per_round,
        drafts_per_author=c.drafts_per_author,
        max_words=c.max_words,
        participation_needed=c.participation_needed,
        participation_window=c.participation_window,
    )


def history(
    db: Database, circle: Circle, *, reviewer_id: int | None = None
) -> tuple[PastAssignment, ...]:
    """The circle's assignments in its last HISTORY_ROUNDS rounds, with whether each was
    critiqued; with ``reviewer_id``, only that member's (all the give-and-take check of one
    member needs).

    Work still open (not yet due, no critique yet) is left out: it is neither given nor
    missed yet, so nobody is held back for a round that is still under way. Only the
    window's rounds are read, through indexes, so the cost does not grow with the circle's age.
    """
    first = db.execute(
        "SELECT MIN(id), MIN(number) FROM rounds WHERE circle_id = ? AND number > ?",
        [circle.id, next_round_number(db, circle) - 1 - HISTORY_ROUNDS],
    ).fetchone()
    if first[0] is None:
        return ()
    critiqued = "EXISTS (SELECT 1 FROM critiques c WHERE c.assignment_id = a.id)"
    if reviewer_id is None:  # the window's rounds, then their assignments
        source = "rounds r JOIN assignments a ON a.round_id = r.id"
        scope, params = "r.circle_id = ? AND r.number >= ?", [circle.id, first[1]]
    else:  # the member's assignments since the window's first round (ids grow with time)
        source = "assignments a JOIN rounds r ON r.id = a.round_id"
        scope = "a.reviewer_id = ? AND a.round_id >= ? AND r.circle_id = ?"
        params = [reviewer_id, first[0], circle.id]
    rows = db.execute(
        f"""
        SELECT r.number, a.reviewer_id, s.member_id, {critiqued} AS done
        FROM {source} JOIN submissions s ON s.id = a.submission_id
        WHERE {scope} AND (a.status != ? OR {critiqued})
        ORDER BY r.number, a.id
        """,
        [*params, OPEN],
    ).fetchall()
    return tuple(
        PastAssignment(n, reviewer, author, bool(done)) for n, reviewer, author, done in rows
    )


def next_round_number(db: Database, circle: Circle) -> int:
    row = db.execute("SELECT MAX(number) FROM rounds WHERE circle_id = ?", [circle.id]).fetchone()
    return int(row[0] or 0) + 1


def round_input(db: Database, circle: Circle, *, with_history: bool = True) -> RoundInput:
    reviewers = tuple(
        row[0]
        for row in db.execute(
            "SELECT id FROM members WHERE circle_id = ? AND status = ? ORDER BY id",
            [circle.id, members.ACTIVE],
        )
    )
    drafts = tuple(
        QueuedDraft(submission_id=row[0], author_id=row[1], word_count=row[2])
        for row in db.execute(
            "SELECT s.id, s.member_id, s.word_count FROM submissions s"
            " JOIN members m ON m.id = s.member_id"
            " WHERE s.circle_id = ? AND s.status = 'queued' AND m.status != ? ORDER BY s.id",
            [circle.id, members.LEFT],
        )
    )
    return RoundInput(
        round_number=next_round_number(db, circle),
        reviewers=reviewers,
        drafts=drafts,
        history=history(db, circle) if with_history else (),
        settings=round_settings(circle),
    )


class _Settled(Circle):
    """A circle whose settings are read from their JSON once, not once per use: a round
    (or a run of digests) asks for them thousands of times."""

    @functools.cached_property
    def config(self) -> CircleSettings:
        return super().config


def settled(circle: Circle) -> Circle:
    if isinstance(circle, _Settled):
        return circle
    return _Settled(circle.id, circle.address, circle.name, circle.settings, circle.created_at)
