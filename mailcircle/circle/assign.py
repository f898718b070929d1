"""Who reviews whom: a pure function of the circle's state, deterministic per round.

``plan_round`` first picks the drafts that go out (oldest first; too long, over the
per-author limit, or from a member who takes without giving: they wait), then gives each
one reviewers:

- never the author, never someone who may not review now, at most
  ``max_reviews_per_round`` per reviewer, loads kept even (everyone gets a first
  assignment before anyone gets a second);
- rotation: pairs (reviewer, author) that never met come first, then those that met
  longest ago; the reviewer of the author's last round comes last, used only when there
  is no other choice.

Circles of up to EXACT_MEMBERS reviewers are solved exactly: a minimum-cost assignment
(scipy's ``linear_sum_assignment``) per layer of load, so over N rounds in a circle of N+1
everyone reads everyone; 200 members plan in well under a second. Larger circles
(thousands of members) use a bucketed greedy pass that looks at a bounded number of
candidates per slot, so cost grows linearly with the number of assignments.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

EXACT_MEMBERS = 200  # circles up to this many reviewers are planned exactly
CANDIDATES_PER_SLOT = 24  # greedy: how many reviewers of the lightest load to weigh


@dataclass(frozen=True)
class RoundSettings:
    reviews_per_draft: int = 3
    max_reviews_per_round: int = 2
    drafts_per_author: int = 1
    max_words: int = 8000
    participation_needed: int = 3
    participation_window: int = 4


@dataclass(frozen=True)
class QueuedDraft:
    submission_id: int
    author_id: int
    word_count: int


@dataclass(frozen=True)
class PastAssignment:
    round_number: int
    reviewer_id: int
    author_id: int
    critiqued: bool


@dataclass(frozen=True)
class RoundInput:
    round_number: int
    reviewers: tuple[int, ...]
    drafts: tuple[QueuedDraft, ...]
    history: tuple[PastAssignment, ...]
    settings: RoundSettings = field(default_factory=RoundSettings)


@dataclass(frozen=True)
class Deferred:
    submission_id: int
    reason: str  # held_back, too_long, author_limit, no_reviewers


@dataclass(frozen=True)
class RoundPlan:
    assignments: tuple[tuple[int, int], ...]  # (submission_id, reviewer_id)
    deferred: tuple[Deferred, ...]
    short: tuple[tuple[int, int], ...]  # (submission_id, reviewers it got)
    held_back: frozenset[int]


def held_back_members(history: Iterable[PastAssignment], settings: RoundSettings) -> frozenset[int]:
    """Members who missed more of their recent rounds with assignments than allowed."""
    rounds: dict[int, dict[int, bool]] = defaultdict(dict)  # member -> round -> critiqued any
    for past in history:
        seen = rounds[past.reviewer_id]
        seen[past.round_number] = seen.get(past.round_number, False) or past.critiqued
    allowed = settings.participation_window - settings.participation_needed
    held = set()
    for member, by_round in rounds.items():
        recent = sorted(by_round)[-settings.participation_window :]
        misses = sum(1 for number in recent if not by_round[number])
        if misses > allowed:
            held.add(member)
    return frozenset(held)


def plan_round(inp: RoundInput) -> RoundPlan:
    settings = inp.settings
    held = held_back_members(inp.history, settings)
    selected, deferred = _select_drafts(inp, held)
    reviewers = sorted(set(inp.reviewers))
    rng = random.Random(inp.round_number)
    tiebreak = {r: rng.random() for r in reviewers}

    last_met: dict[tuple[int, int], int] = {}
    recent_load: dict[int, int] = defaultdict(int)
    givers: set[int] = set()
    last_round_of_author: dict[int, int] = {}
    for past in inp.history:
        pair = (past.reviewer_id, past.author_id)
        last_met[pair] = max(last_met.get(pair, -1), past.round_number)
        recent_load[past.reviewer_id] += 1
        if past.critiqued:
            givers.add(past.reviewer_id)
        last_round_of_author[past.author_id] = max(
            last_round_of_author.get(past.author_id, -1), past.round_number
        )

    def tier(reviewer: int, author: int) -> tuple[int, int]:
        """Lower is better: (reviewed this author's last round?, round they last met)."""
        met = last_met.get((reviewer, author), -1)
        consecutive = met >= 0 and met == last_round_of_author.get(author, -2)
        return (1 if consecutive else 0, met)

    # Members who give as well as take are served first when reviewers are scarce.
    selected.sort(key=lambda d: 0 if d.author_id in givers else 1)
    wanted = settings.reviews_per_draft
    if len(reviewers) <= EXACT_MEMBERS:
        chosen = _exact(
            selected, reviewers, wanted, settings.max_reviews_per_round, tier, recent_load, tiebreak
        )
    else:
        chosen = _greedy(
            selected, reviewers, wanted, settings.max_reviews_per_round, tier, recent_load, tiebreak
        )

    assignments: list[tuple[int, int]] = []
    short: list[tuple[int, int]] = []
    for draft in selected:
        got = chosen.get(draft.submission_id, [])
        if not got:
            deferred.append(Deferred(draft.submission_id, "no_reviewers"))
            continue
        assignments += [(draft.submission_id, r) for r in sorted(got)]
        if len(got) < wanted:
            short.append((draft.submission_id, len(got)))
    assignments.sort()
    return RoundPlan(tuple(assignments), tuple(deferred), tuple(sorted(short)), held)


def _select_drafts(
    inp: RoundInput, held: frozenset[int]
) -> tuple[list[QueuedDraft], list[Deferred]]:
    selected: list[QueuedDraft] = []
    deferred: list[Deferred] = []
    per_author: dict[int, int] = defaultdict(int)
    for draft in inp.drafts:
        if draft.word_count > inp.settings.max_words:
            deferred.append(Deferred(draft.submission_id, "too_long"))
        elif draft.author_id in held:
            deferred.append(Deferred(draft.submission_id, "held_back"))
        elif per_author[draft.author_id] >= inp.settings.drafts_per_author:
            deferred.append(Deferred(draft.submission_id, "author_limit"))
        else:
            per_author[draft.author_id] += 1
            selected.append(draft)
    return selected, deferred


def _exact(drafts, reviewers, wanted, cap, tier, recent_load, tiebreak):
    """Optimal assignment, one layer of load at a time (scipy's linear_sum_assignment).

    Layer ``u`` gives each reviewer at most one more draft, so everyone's first assignment
    comes before anyone's second, and no layer can put one reviewer on a draft twice (pairs
    made in earlier layers are forbidden in later ones). Within a layer the matching is a
    minimum-cost one: as many slots filled as possible, then earlier drafts (givers, then
    the oldest) before later ones, then the best rotation tier, then the lightest recent load.
    """
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    chosen: dict[int, list[int]] = defaultdict(list)
    if not drafts or not reviewers:
        return chosen
    order = sorted(reviewers, key=lambda r: (recent_load[r], tiebreak[r]))
    width = len(order)
    authors = sorted({d.author_id for d in drafts})
    pair_tiers = {a: [tier(r, a) for r in order] for a in authors}
    ranks = {t: n for n, t in enumerate(sorted({t for row in pair_tiers.values() for t in row}))}
    by_author = {}
    for a in authors:
        row = [ranks[t] * width + at for at, t in enumerate(pair_tiers[a])]
        by_author[a] = np.array(row, dtype=np.float64)
    rows_at_most = len(drafts) * wanted
    worst_tier = float(len(ranks) * width + width)
    step = rows_at_most * worst_tier + 1  # one draft of priority outweighs every tier
    forbid = rows_at_most * (step * len(drafts) + worst_tier) + 1  # outweighs everything
    base = np.empty((len(drafts), width), dtype=np.float64)
    for index, draft in enumerate(drafts):
        base[index] = by_author[draft.author_id] + step * index
    taken = np.zeros((len(drafts), width), dtype=bool)
    column = {r: at for at, r in enumerate(order)}
    for index, draft in enumerate(drafts):
        if draft.author_id in column:  # never the author
            taken[index, column[draft.author_id]] = True
    need = np.full(len(drafts), wanted, dtype=np.int64)
    allowed = width - taken.sum(axis=1)
    for _ in range(cap):
        reps = np.minimum(need, allowed)
        if not reps.any():
            break
        rows = np.repeat(np.arange(len(drafts)), reps)
        cost = base[rows] + forbid * taken[rows]
        picked_rows, picked_cols = linear_sum_assignment(cost)
        placed = 0
        for row, col in zip(picked_rows.tolist(), picked_cols.tolist(), strict=True):
            if cost[row, col] >= forbid:
                continue
            index = int(rows[row])
            taken[index, col] = True
            need[index] -= 1
            allowed[index] -= 1
            chosen[drafts[index].submission_id].append(order[col])
            placed += 1
        if not placed:
            break
    return chosen


def _greedy(drafts, reviewers, wanted, cap, tier, recent_load, tiebreak):
    """Bucket reviewers by this round's load; weigh a bounded few of the lightest per slot."""
    buckets: list[list[int]] = [sorted(reviewers, key=lambda r: (recent_load[r], tiebreak[r]))]
    buckets += [[] for _ in range(cap)]
    cursor = [0] * (cap + 1)
    chosen: dict[int, list[int]] = defaultdict(list)
    for draft in drafts:
        taken: set[int] = set()
        for _ in range(wanted):
            pick = None
            for load in range(cap):
                bucket = buckets[load]
                candidates: list[tuple[Any, int, int]] = []
                index = cursor[load]
                while index < len(bucket) and len(candidates) < CANDIDATES_PER_SLOT:
                    r = bucket[index]
                    if r is not None and r != draft.author_id and r not in taken:
                        candidates.append((tier(r, draft.author_id), index, r))
                    index += 1
                if candidates:
                    _, index, pick = min(candidates)
                    bucket[index] = None  # type: ignore[call-overload]
                    while cursor[load] < len(bucket) and bucket[cursor[load]] is None:
                        cursor[load] += 1
                    buckets[load + 1].append(pick)
                    break
            if pick is None:
                break
            taken.add(pick)
            chosen[draft.submission_id].append(pick)
    return chosen
