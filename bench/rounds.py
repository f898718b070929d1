"""Planning a round at scale: plan_round on 10,000 members and 2,000 drafts.

Prints the time of ``plan_round`` (best of 3) at 1/4, 1/2 and full size, each next to a
baseline measured in the same run on the same input: a plain round-robin that only
skips the author (no loads, rotation or give-and-take). The ratio shows what the rules
cost; the three sizes show how the cost grows. Aim: the full round under 2 s.
No assertions on time.

    python bench/rounds.py
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from mailcircle.circle.assign import PastAssignment, QueuedDraft, RoundInput, plan_round


def make_input(members: int, drafts: int, rounds_of_history: int = 8) -> RoundInput:
    rng = random.Random(42)
    people = list(range(1, members + 1))
    history = []
    for number in range(1, rounds_of_history + 1):
        for _ in range(drafts):
            author = rng.choice(people)
            for reviewer in rng.sample(people, 3):
                if reviewer != author:
                    history.append(PastAssignment(number, reviewer, author, rng.random() < 0.8))
    queued = tuple(
        QueuedDraft(n, rng.choice(people), rng.randint(200, 9000)) for n in range(1, drafts + 1)
    )
    return RoundInput(rounds_of_history + 1, tuple(people), queued, tuple(history))


def round_robin(inp: RoundInput) -> list[tuple[int, int]]:
    reviewers = inp.reviewers
    out, at = [], 0
    for draft in inp.drafts:
        got = 0
        while got < inp.settings.reviews_per_draft:
            reviewer = reviewers[at % len(reviewers)]
            at += 1
            if reviewer != draft.author_id:
                out.append((draft.submission_id, reviewer))
                got += 1
    return out


def best_of(runs: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    print(
        f"{'members':>8} {'drafts':>7} {'history':>8} {'plan_round':>11} {'baseline':>9} "
        f"{'ratio':>6} {'assigned':>9}"
    )
    for members, drafts in ((2500, 500), (5000, 1000), (10_000, 2000)):
        inp = make_input(members, drafts)
        ours = best_of(3, lambda inp=inp: plan_round(inp))
        base = best_of(3, lambda inp=inp: round_robin(inp))
        plan = plan_round(inp)
        print(
            f"{members:>8} {drafts:>7} {len(inp.history):>8} {ours:>10.3f}s {base:>8.3f}s "
            f"{ours / base:>6.1f} {len(plan.assignments):>9}"
        )
    print(f"plan_round 10000 members / 2000 drafts: {ours:.2f} s (aim < 2 s)")


if __name__ == "__main__":
    main()
