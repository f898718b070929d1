"""Who would review whom if a circle's next round started now. It only reads: the plan is
made from the same inputs as a real round (round_inputs.py, assign.py) and never stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlite_utils import Database

from mailcircle.circle import members
from mailcircle.circle.assign import plan_round
from mailcircle.circle.circles import Circle
from mailcircle.circle.round_inputs import round_input


@dataclass(frozen=True)
class RoundPreview:
    round_number: int
    drafts: int  # queued drafts
    reviewers: int  # members who can review
    pairs: list[tuple[str, str, str]]  # (draft title, author's address, reviewer's address)
    waits: list[tuple[str, str]]  # (draft title, why it waits)
    short: list[tuple[str, int]]  # (draft title, how many reviewers it gets)


def preview(db: Database, circle: Circle) -> RoundPreview:
    inputs = round_input(db, circle)
    plan = plan_round(inputs)
    people = {m.id: m.email for m in members.list_members(db, circle)}
    titles = {
        row["id"]: (row["title"], row["member_id"])
        for row in db.query(
            "SELECT id, title, member_id FROM submissions WHERE circle_id = ?", [circle.id]
        )
    }
    return RoundPreview(
        round_number=inputs.round_number,
        drafts=len(inputs.drafts),
        reviewers=len(inputs.reviewers),
        pairs=[
            (titles[s][0], people.get(titles[s][1], "?"), people.get(r, "?"))
            for s, r in plan.assignments
        ],
        waits=[(titles[wait.submission_id][0], wait.reason) for wait in plan.deferred],
        short=[(titles[submission_id][0], got) for submission_id, got in plan.short],
    )
