"""The assignment algorithm's rules, as properties over random circles (hypothesis)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from mailcircle.circle import assign
from mailcircle.circle.assign import (
    PastAssignment,
    QueuedDraft,
    RoundInput,
    RoundSettings,
    held_back_members,
    plan_round,
)


@st.composite
def circles(draw: st.DrawFn) -> RoundInput:
    size = draw(st.integers(1, 14))
    members = list(range(1, size + 1))
    reviewers = draw(st.lists(st.sampled_from(members), unique=True, max_size=size))
    authors = draw(st.lists(st.sampled_from(members), max_size=12))
    drafts = tuple(
        QueuedDraft(n, author, draw(st.integers(0, 9000))) for n, author in enumerate(authors, 1)
    )
    history = tuple(
        PastAssignment(draw(st.integers(1, 6)), r, a, draw(st.booleans()))
        for r, a in draw(
            st.lists(st.tuples(st.sampled_from(members), st.sampled_from(members)), max_size=30)
        )
        if r != a
    )
    round_settings = RoundSettings(
        reviews_per_draft=draw(st.integers(1, 4)),
        max_reviews_per_round=draw(st.integers(1, 3)),
        drafts_per_author=draw(st.integers(1, 2)),
        participation_needed=2,
        participation_window=3,
    )
    return RoundInput(7, tuple(sorted(reviewers)), drafts, history, round_settings)


@settings(max_examples=300, deadline=None)
@given(circles())
def test_the_rules_hold_on_any_circle(inp: RoundInput) -> None:
    plan = plan_round(inp)
    s = inp.settings
    author_of = {d.submission_id: d.author_id for d in inp.drafts}
    words = {d.submission_id: d.word_count for d in inp.drafts}
    load = Counter(r for _, r in plan.assignments)
    per_draft = Counter(sid for sid, _ in plan.assignments)

    assert all(author_of[sid] != r for sid, r in plan.assignments)  # never the author
    assert all(r in inp.reviewers for _, r in plan.assignments)  # only who may review
    assert all(n <= s.max_reviews_per_round for n in load.values())  # load cap
    assert len(set(plan.assignments)) == len(plan.assignments)  # nobody twice on a draft
    assert all(n <= s.reviews_per_draft for n in per_draft.values())
    out = set(per_draft)
    waiting = {d.submission_id: d.reason for d in plan.deferred}
    assert out.isdisjoint(waiting) and out | set(waiting) == set(author_of)  # none lost
    assert all(words[sid] <= s.max_words for sid in out)
    assert all(author_of[sid] not in plan.held_back for sid in out)
    assert all(n <= s.drafts_per_author for n in Counter(author_of[sid] for sid in out).values())
    for sid, got in plan.short:
        assert got == per_draft[sid] < s.reviews_per_draft
    # Every draft that went out short could not have had another free reviewer.
    for sid in out:
        if per_draft[sid] < s.reviews_per_draft:
            free = [
                r
                for r in inp.reviewers
                if r != author_of[sid]
                and (sid, r) not in plan.assignments
                and load[r] < s.max_reviews_per_round
            ]
            assert free == [], f"draft {sid} is short but {free} were free"
    # Loads are even: nobody has a second assignment while an eligible reviewer has none
    # (a reviewer can be idle only if every draft out is their own or already theirs).
    for idle in (r for r in inp.reviewers if load[r] == 0):
        for sid in out:
            if author_of[sid] != idle and per_draft[sid] < s.reviews_per_draft:
                raise AssertionError(f"{idle} idle while draft {sid} lacks reviewers")
    assert plan_round(inp) == plan  # deterministic


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 9))
def test_over_n_rounds_in_a_circle_of_n_plus_one_every_pair_meets(n: int) -> None:
    members = tuple(range(1, n + 2))
    history: list[PastAssignment] = []
    serial = 0
    for number in range(1, n + 1):
        drafts = []
        for author in members:
            serial += 1
            drafts.append(QueuedDraft(serial, author, 100))
        inp = RoundInput(
            number, members, tuple(drafts), tuple(history), RoundSettings(reviews_per_draft=1)
        )
        author_of = {d.submission_id: d.author_id for d in drafts}
        for sid, reviewer in plan_round(inp).assignments:
            history.append(PastAssignment(number, reviewer, author_of[sid], True))
    met = {(p.reviewer_id, p.author_id) for p in history}
    assert len(met) == n * (n + 1)


def test_never_the_same_reviewer_for_an_author_twice_in_a_row() -> None:
    history = (PastAssignment(1, 2, 1, True),)  # Ben read Ann last round
    drafts = (QueuedDraft(10, 1, 100),)
    plan = plan_round(RoundInput(2, (2, 3), drafts, history, RoundSettings(reviews_per_draft=1)))
    assert plan.assignments == ((10, 3),)
    # ... unless there is no other choice.
    plan = plan_round(RoundInput(2, (2,), drafts, history, RoundSettings(reviews_per_draft=1)))
    assert plan.assignments == ((10, 2),)


def test_takers_wait_but_still_review() -> None:
    s = RoundSettings(participation_needed=3, participation_window=4, reviews_per_draft=2)
    missed = tuple(PastAssignment(n, 1, 2, critiqued=n > 2) for n in range(1, 5))
    assert held_back_members(missed, s) == {1}  # missed 2 of 4; 1 miss is allowed
    assert held_back_members(missed[1:], s) == frozenset()  # 1 miss of 3
    drafts = (QueuedDraft(10, 1, 100), QueuedDraft(11, 2, 100), QueuedDraft(12, 3, 100))
    plan = plan_round(RoundInput(5, (1, 2, 3), drafts, missed, s))
    assert [(d.submission_id, d.reason) for d in plan.deferred] == [(10, "held_back")]
    assert {(11, 1), (12, 1)} <= set(plan.assignments)  # Ann still reviews both


def test_long_drafts_and_second_drafts_wait() -> None:
    drafts = (QueuedDraft(1, 1, 9000), QueuedDraft(2, 1, 100), QueuedDraft(3, 1, 200))
    plan = plan_round(RoundInput(1, (2, 3, 4), drafts, ()))
    assert [(d.submission_id, d.reason) for d in plan.deferred] == [
        (1, "too_long"),
        (3, "author_limit"),
    ]
    assert {sid for sid, _ in plan.assignments} == {2}


def test_givers_are_served_first_when_reviewers_are_scarce() -> None:
    # Ann (1) critiqued last round, Ben (2) never did; one reviewer slot is left in all.
    history = (PastAssignment(1, 1, 3, True),)
    drafts = (QueuedDraft(10, 2, 100), QueuedDraft(11, 1, 100))  # Ben's is older
    s = RoundSettings(reviews_per_draft=1, max_reviews_per_round=1)
    plan = plan_round(RoundInput(2, (3,), drafts, history, s))
    assert plan.assignments == ((11, 3),)
    assert [(d.submission_id, d.reason) for d in plan.deferred] == [(10, "no_reviewers")]


def test_a_big_round_is_planned_with_the_same_rules() -> None:
    members = tuple(range(1, 3001))
    drafts = tuple(QueuedDraft(n, n, 100) for n in range(1, 801))
    plan = plan_round(RoundInput(3, members, drafts, ()))
    load = Counter(r for _, r in plan.assignments)
    assert len(plan.assignments) == 2400 and max(load.values()) == 1
    assert all(sid != r for sid, r in plan.assignments)


def test_a_circle_of_200_is_planned_exactly_with_every_rule() -> None:
    assert assign.EXACT_MEMBERS >= 200  # the exact path, not the greedy one
    members = tuple(range(1, 201))
    history = tuple(
        PastAssignment(number, (a + number * 7) % 200 + 1, a, True)
        for number in range(1, 5)
        for a in members
        if (a + number * 7) % 200 + 1 != a
    )
    drafts = tuple(QueuedDraft(a, a, 100) for a in members)
    inp = RoundInput(5, members, drafts, history)
    plan = plan_round(inp)
    load = Counter(r for _, r in plan.assignments)
    assert len(plan.assignments) == 400 and set(load.values()) == {2}  # capped at 2 each
    assert all(sid != r for sid, r in plan.assignments)
    assert len(set(plan.assignments)) == 400
    # Nobody reads the author they read last round while 199 others are free to.
    last = {(p.reviewer_id, p.author_id) for p in history if p.round_number == 4}
    assert not last & {(r, sid) for sid, r in plan.assignments}  # (reviewer, author)
    assert plan_round(inp) == plan


def test_a_small_circle_with_raised_caps_fills_every_slot_it_can() -> None:
    members = tuple(range(1, 21))
    drafts = tuple(QueuedDraft(n, n % 20 + 1, 100) for n in range(1, 101))
    s = RoundSettings(drafts_per_author=5, max_reviews_per_round=15)
    plan = plan_round(RoundInput(1, members, drafts, (), s))
    load = Counter(r for _, r in plan.assignments)
    assert len(plan.assignments) == 300 and max(load.values()) == 15
