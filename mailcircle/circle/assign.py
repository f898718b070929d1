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

Small rounds (a real circle of a few dozen) are solved exactly: an augmenting-path
bipartite matching fills the slots tier by tier (first load, then how recently the pair
met), so over N rounds in a circle of N+1 everyone reads everyone. Large rounds (thousands
of members) use a bucketed greedy pass that looks at a bounded number of candidates per
slot, so cost grows linearly with the number of assignments.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

EXACT_LIMIT = 60_000  # slots x reviewers up to which the exact matching is used
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
    if len(selected) * wanted * max(1, len(reviewers)) <= EXACT_LIMIT:
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


def _exact(drafts, reviewers, wanted, cap, tier, recent_load, tiebreak):  # noqa: ANN001, ANN202
    """Fill slots by augmenting paths, widening what is allowed one tier at a time."""
    slots = [d for d in drafts for _ in range(wanted)]
    siblings = [[i for i in range(len(slots)) if slots[i] is d] for d in slots]
    slot_of: list[int | None] = [None] * len(slots)  # slot -> reviewer holding it
    holder: dict[tuple[int, int], int] = {}  # (reviewer, unit) -> slot
    order = sorted(reviewers, key=lambda r: (recent_load[r], tiebreak[r]))
    tiers = sorted({tier(r, d.author_id) for d in drafts for r in reviewers if r != d.author_id})

    def augment(slot: int, units: int, limit: tuple[int, int], seen: set) -> bool:  # noqa: ANN001
        author = slots[slot].author_id
        for r in order:
            if r == author or tier(r, author) > limit:
                continue
            if any(slot_of[s] == r for s in siblings[slot] if s != slot):
                continue  # already reviewing this draft through another slot
            for unit in range(units):
                key = (r, unit)
                if key in seen:
                    continue
                seen.add(key)
                other = holder.get(key)
                before = slot_of[slot]
                slot_of[slot] = r  # tentatively: siblings moved meanwhile must avoid r
                if other is None or augment(other, units, limit, seen):
                    holder[key] = slot
                    return True
                slot_of[slot] = before
        return False

    for units in range(1, cap + 1):  # everyone's first assignment before anyone's second
        for limit in tiers:
            for slot in range(len(slots)):
                if slot_of[slot] is None:
                    augment(slot, units, limit, set())
    chosen: dict[int, list[int]] = defaultdict(list)
    for slot, reviewer in enumerate(slot_of):
        if reviewer is not None:
            chosen[slots[slot].submission_id].append(reviewer)
    return chosen


def _greedy(drafts, reviewers, wanted, cap, tier, recent_load, tiebreak):  # noqa: ANN001, ANN202
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
                candidates = []
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
