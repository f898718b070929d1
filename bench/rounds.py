"""Planning and starting rounds: the exact planner, the greedy planner, and a whole start.

Three parts, each next to a baseline measured in the same run on the same input (these
machines are shared and noisy, so the ratio is the figure to compare):

- exact: ``plan_round`` for small circles (20, 50, 100, 200 members, each with a draft,
  eight rounds of history), and a 20-member circle with raised caps and 400 drafts.
  Aim: each under 0.5 s.
- greedy: ``plan_round`` at 2,500 / 500, 5,000 / 1,000 and 10,000 / 2,000.
- start: the whole ``start_round`` on a database of 10,000 members and 2,000 queued
  drafts of ~3 KB with eight rounds of history: reading the history, planning, writing the
  assignment rows and composing and queueing every assignment mail. Aim: under 2 s.

The baseline is a plain round-robin that only skips the author (no loads, rotation or
give-and-take); for the whole start it is the same round-robin plus inserting as many
bare rows as there are assignments. No assertions on time.

    python bench/rounds.py [--paths exact,raised,greedy] [--skip-start] [--runs 3]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mailcircle.circle.assign import (
    PastAssignment,
    QueuedDraft,
    RoundInput,
    RoundSettings,
    plan_round,
)

EXACT = ((20, 20), (50, 50), (100, 100), (200, 200))
GREEDY = ((2500, 500), (5000, 1000), (10_000, 2000))
RAISED = RoundSettings(drafts_per_author=20, max_reviews_per_round=60)
SLOW = 30.0  # a single plan slower than this is not repeated


def make_input(
    members: int,
    drafts: int,
    rounds_of_history: int = 8,
    settings: RoundSettings | None = None,
    one_each: bool = False,
) -> RoundInput:
    rng = random.Random(42)
    people = list(range(1, members + 1))
    history = []
    for number in range(1, rounds_of_history + 1):
        for n in range(drafts):
            author = people[n % members] if one_each else rng.choice(people)
            for reviewer in rng.sample(people, 3):
                if reviewer != author:
                    history.append(PastAssignment(number, reviewer, author, rng.random() < 0.8))
    queued = tuple(
        QueuedDraft(n, people[(n - 1) % members] if one_each else rng.choice(people), 1000)
        for n in range(1, drafts + 1)
    )
    return RoundInput(
        rounds_of_history + 1, tuple(people), queued, tuple(history), settings or RoundSettings()
    )


def round_robin(inp: RoundInput) -> list[tuple[int, int]]:
    reviewers = inp.reviewers
    out, at = [], 0
    for draft in inp.drafts:
        got = 0
        while got < inp.settings.reviews_per_draft and len(reviewers) > 1:
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
        if times[-1] > SLOW:
            break
    return min(times)


def plans(runs: int, paths: set[str]) -> None:
    print(
        f"{'path':>6} {'members':>8} {'drafts':>7} {'history':>8} {'plan_round':>11} "
        f"{'baseline':>9} {'ratio':>7} {'assigned':>9}"
    )
    cases = [("exact", m, d, None) for m, d in EXACT] if "exact" in paths else []
    cases += [("exact", 20, 400, RAISED)] if "raised" in paths else []
    cases += [("greedy", m, d, None) for m, d in GREEDY] if "greedy" in paths else []
    for path, members, drafts, settings in cases:
        inp = make_input(members, drafts, settings=settings, one_each=settings is None)
        started = time.perf_counter()
        plan = plan_round(inp)
        first = time.perf_counter() - started
        if first < SLOW and runs > 1:
            first = min(first, best_of(runs - 1, lambda i=inp: plan_round(i)))
        ours = first
        base = best_of(runs, lambda i=inp: round_robin(i))
        label = f"{path}*" if settings else path
        print(
            f"{label:>6} {members:>8} {drafts:>7} {len(inp.history):>8} {ours:>10.3f}s "
            f"{base:>8.4f}s {ours / base:>7.0f} {len(plan.assignments):>9}",
            flush=True,
        )
    print("(exact* = 20 members, caps raised: 20 drafts per author, 60 reviews per round)")


def seed(path: Path, members: int, drafts: int, history_rounds: int = 8) -> None:
    """A circle with ``members``, ``drafts`` queued drafts of ~3 KB and past rounds, by SQL."""
    from mailcircle import db as database
    from mailcircle.circle import circles
    from mailcircle.clock import FakeClock, iso
    from mailcircle.db import transaction

    clock = FakeClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    db = database.connect(path)
    circle = circles.create(db, clock, "poets@example.org", "Poets")
    rng = random.Random(3)
    now = iso(clock.now())
    body = ("so much depends upon a red wheel barrow glazed with rain water\n" * 48).strip()
    with transaction(db):
        db["members"].insert_all(
            {
                "id": n,
                "circle_id": circle.id,
                "email": f"m{n}@example.net",
                "name": f"Member {n}",
                "status": "active",
                "joined_at": now,
                "bounce_token": f"b{n}",
            }
            for n in range(1, members + 1)
        )
        total = drafts * (history_rounds + 1)
        raw = b"From: m1@example.net\r\nSubject: a draft\r\n\r\n" + body.encode()
        db.conn.executemany(
            "INSERT INTO spool (id, received_at, source, mail_from, rcpt_to, circle_id,"
            " message_id, dedupe_key, size, raw, status) VALUES (?, ?, 'smtp', '', ?, ?, ?, ?,"
            " ?, ?, 'done')",
            (
                (n, now, circle.address, circle.id, f"<d{n}@x>", f"<d{n}@x>", len(raw), raw)
                for n in range(1, total + 1)
            ),
        )
        serial = 0
        for number in range(1, history_rounds + 2):
            past = number <= history_rounds
            starts = iso(clock.now() - timedelta(days=7 * (history_rounds + 1 - number)))
            if past:
                db.execute(
                    "INSERT INTO rounds (id, circle_id, number, starts_at, status)"
                    " VALUES (?, ?, ?, ?, 'closed')",
                    [number, circle.id, number, starts],
                )
            subs, rows, crits = [], [], []
            for _ in range(drafts):
                serial += 1
                author = rng.randint(1, members)
                subs.append(
                    (
                        serial,
                        circle.id,
                        author,
                        serial,
                        f"<d{serial}@x>",
                        f"Draft {serial}",
                        body,
                        len(body.split()),
                        "closed" if past else "queued",
                        starts,
                    )
                )
                if not past:
                    continue
                for k, reviewer in enumerate(rng.sample(range(1, members + 1), 3)):
                    if reviewer == author:
                        continue
                    aid = serial * 4 + k
                    done = rng.random() < 0.8
                    rows.append(
                        (
                            aid,
                            number,
                            serial,
                            reviewer,
                            f"t{aid}",
                            "done" if done else "expired",
                            starts,
                            starts,
                            f"<a{aid}@x>",
                        )
                    )
                    if done:
                        crits.append((aid, serial, f"<c{aid}@x>", "Lovely.", starts))
            db.conn.executemany(
                "INSERT INTO submissions (id, circle_id, member_id, spool_id, message_id, title,"
                " body, word_count, status, submitted_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                subs,
            )
            db.conn.executemany(
                "INSERT INTO assignments (id, round_id, submission_id, reviewer_id, token,"
                " status, assigned_at, due_at, message_id) VALUES (?,?,?,?,?,?,?,?,?)",
                rows,
            )
            db.conn.executemany(
                "INSERT INTO critiques (assignment_id, spool_id, message_id, body, received_at)"
                " VALUES (?,?,?,?,?)",
                crits,
            )
    db.conn.execute("ANALYZE")
    db.close()


def whole_start(members: int, drafts: int) -> None:
    from mailcircle import db as database
    from mailcircle.circle import assignments, circles
    from mailcircle.clock import FakeClock
    from mailcircle.db import transaction
    from mailcircle.outbound.compose import Composer

    clock = FakeClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        started = time.perf_counter()
        seed(path, members, drafts)
        seeded = time.perf_counter() - started
        db = database.connect(path)
        circle = circles.get(db, "poets@example.org")
        composer = Composer(clock)
        cpu = time.process_time()
        started = time.perf_counter()
        result = _start(assignments, db, clock, composer, circle)
        ours = time.perf_counter() - started
        cpu = time.process_time() - cpu
        sent = db.execute("SELECT COUNT(*) FROM outbox WHERE purpose = 'assignment'").fetchone()
        # Baseline: round-robin over the same members and drafts, and as many bare rows.
        started = time.perf_counter()
        people = tuple(r for (r,) in db.execute("SELECT id FROM members ORDER BY id"))
        queued = tuple(
            QueuedDraft(*row)
            for row in db.execute(
                "SELECT id, member_id, word_count FROM submissions WHERE status = 'assigned'"
            )
        )
        pairs = round_robin(RoundInput(99, people, queued, ()))
        with transaction(db):
            db.execute("CREATE TEMP TABLE bare (a INTEGER, b INTEGER, token TEXT)")
            db.conn.executemany(
                "INSERT INTO bare VALUES (?, ?, ?)", ((s, r, f"x{s}-{r}") for s, r in pairs)
            )
        base = time.perf_counter() - started
        db.close()
    print(
        f"start_round {members} members / {drafts} drafts: {ours:.2f} s ({cpu:.2f} s CPU) "
        f"({len(result.assignment_ids)} assignments, {sent[0]} mails queued); "
        f"baseline {base:.3f} s, ratio {ours / base:.0f}x; aim < 2 s (seeding took {seeded:.1f} s)"
    )


def _start(assignments, db, clock, composer, circle):
    """start_round as the scheduler calls it: in a transaction where the code needs one."""
    from mailcircle.circle.rounds import latest_start
    from mailcircle.db import transaction

    slot = latest_start(clock.now(), circle.config)
    if hasattr(assignments, "RoundTaken"):  # plans outside the lock, writes in its own transaction
        return assignments.start_round(db, clock, composer, circle, slot)
    with transaction(db):
        return assignments.start_round(db, clock, composer, circle, slot)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-start", action="store_true")
    parser.add_argument("--paths", default="exact,raised,greedy", help="which plans to time")
    args = parser.parse_args()
    if args.paths:
        plans(args.runs, set(args.paths.split(",")))
    if not args.skip_start:
        whole_start(10_000, 2000)


if __name__ == "__main__":
    main()
