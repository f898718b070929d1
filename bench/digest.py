"""Digests at scale: render and queue the weekly digest for 10,000 members, on realistic data.

Builds a circle of 10,000 members (a tenth of them in other time zones) with eight past
rounds of 2,000 drafts (history for the give-and-take standing), and a round of this week
whose critiques are half in (some late, some by backups, many thanked) and half still
open work; an engagement day is announced. Then it times ``send_due_digests`` (every
member's digest rendered from the Jinja templates, text and HTML, and written to the
outbox in one transaction). As a baseline measured in the same run it times rendering the
same number of plain ``str.format`` mails with no database work, and prints the ratio.
Aim: the digests in under 5 s. No assertions on time.

    python bench/digest.py [--members 10000] [--rounds 8]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mailcircle import db as database
from mailcircle.circle import circles, digest
from mailcircle.clock import FakeClock, iso
from mailcircle.db import transaction
from mailcircle.outbound.compose import Composer

ZONES = ("Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney")


def build(db_path: Path, members: int, past_rounds: int, clock: FakeClock) -> circles.Circle:
    db = database.connect(db_path)
    rng = random.Random(7)
    circle = circles.create(db, clock, "poets@example.org", "Poets")
    now = clock.now()
    joined = iso(now - timedelta(days=7 * (past_rounds + 2)))
    drafts = members // 5
    with transaction(db):
        db.conn.executemany(
            "INSERT INTO members (id, circle_id, email, name, status, timezone, joined_at,"
            " bounce_token, role) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    n,
                    circle.id,
                    f"m{n}@example.net",
                    f"Member {n}",
                    "paused" if n % 50 == 0 else "active",
                    ZONES[n % len(ZONES)] if n % 10 == 0 else "UTC",
                    joined,
                    f"t{n}",
                    "moderator" if n <= 2 else "member",
                )
                for n in range(1, members + 1)
            ),
        )
        db.execute(
            "INSERT INTO spool (id, received_at, source, mail_from, rcpt_to, dedupe_key, size,"
            " raw, status) VALUES (1, ?, 'smtp', '', ?, 'x', 0, x'00', 'done')",
            [joined, circle.address],
        )
        serial = 0
        aid = 0
        for number in range(1, past_rounds + 2):
            current = number == past_rounds + 1
            starts = now - timedelta(days=7 * (past_rounds + 1 - number) + (5 if current else 0))
            db.execute(
                "INSERT INTO rounds (id, circle_id, number, starts_at, status)"
                " VALUES (?, ?, ?, ?, ?)",
                [number, circle.id, number, iso(starts), "open" if current else "closed"],
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
                        f"<d{serial}@x>",
                        f"Draft number {serial}",
                        rng.randint(100, 5000),
                        "assigned" if current else "closed",
                        iso(starts),
                    )
                )
                for k, reviewer in enumerate(rng.sample(range(1, members + 1), 3)):
                    if reviewer == author:
                        continue
                    aid += 1
                    in_ = rng.random() < (0.5 if current else 0.8)
                    backup = aid - 1 if k == 2 and rng.random() < 0.1 else None
                    due = starts + timedelta(days=7)
                    rows.append(
                        (
                            aid,
                            number,
                            serial,
                            reviewer,
                            f"a{aid}",
                            "done" if in_ else ("open" if current else "expired"),
                            backup,
                            iso(starts),
                            iso(due),
                            f"<a{aid}@x>",
                        )
                    )
                    if in_:
                        got = starts + timedelta(hours=rng.randint(1, 24 * 8))
                        thanked = iso(got + timedelta(hours=3)) if rng.random() < 0.4 else None
                        crits.append(
                            (aid, f"<c{aid}@x>", iso(got), int(got > due), f"r{aid}", thanked)
                        )
            db.conn.executemany(
                "INSERT INTO submissions (id, circle_id, member_id, spool_id, message_id, title,"
                " body, word_count, status, submitted_at) VALUES (?, ?, ?, 1, ?, ?, '', ?, ?, ?)",
                subs,
            )
            db.conn.executemany(
                "INSERT INTO assignments (id, round_id, submission_id, reviewer_id, token,"
                " status, backup_for, assigned_at, due_at, message_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.conn.executemany(
                "INSERT INTO critiques (assignment_id, spool_id, message_id, body, received_at,"
                " late, token, thanked_at) VALUES (?, 1, ?, 'Lovely.', ?, ?, ?, ?)",
                crits,
            )
        db.execute(
            "INSERT INTO engagement_days (circle_id, day, topic, created_at)"
            " VALUES (?, ?, 'Openings that hook', ?)",
            [circle.id, (now + timedelta(days=3)).date().isoformat(), iso(now)],
        )
    counts = {
        table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        for table in ("members", "submissions", "assignments", "critiques")
    }
    print("built: " + ", ".join(f"{n} {table}" for table, n in counts.items()))
    db.close()
    return circle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=8, help="past rounds of history")
    args = parser.parse_args()
    clock = FakeClock(datetime(2026, 3, 8, 18, 0, tzinfo=UTC))  # a Sunday, digest time
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        circle = build(path, args.members, args.rounds, clock)
        # Digests are due at 18:00 in each member's zone: run where every zone has passed it.
        db = database.connect(path)
        sent = 0
        cpu = time.process_time()
        started = time.perf_counter()
        for hours in (0, 5):  # 18:00 UTC: UTC, Europe, Asia, Australia; 23:00: New York
            moment = FakeClock(clock.now() + timedelta(hours=hours))
            with transaction(db):
                sent += digest.send_due_digests(db, moment, Composer(moment), circle)
        ours = time.perf_counter() - started
        cpu = time.process_time() - cpu
        queued = db.execute("SELECT COUNT(*) FROM outbox WHERE purpose = 'digest'").fetchone()[0]
        sample = db.execute(
            "SELECT raw FROM outbox WHERE purpose = 'digest' ORDER BY id LIMIT 1"
        ).fetchone()
        db.close()
    template = "Hello {name},\n\nHere is your week in {circle}.\n{lines}\n"
    started = time.perf_counter()
    for n in range(sent):
        template.format(name=f"Member {n}", circle="Poets", lines="  a line\n" * 10)
    base = time.perf_counter() - started
    print(f"{sent} digests rendered (text + HTML) and queued ({queued} in the outbox)")
    print(f"a digest is {len(sample[0]) if sample else 0} bytes")
    print(
        f"send_due_digests: {ours:.2f} s   baseline (str.format only): {base:.3f} s   "
        f"ratio {ours / base:.0f}x"
    )
    print(f"digests for {args.members} members: {ours:.2f} s, {cpu:.2f} s of CPU (aim < 5 s)")


if __name__ == "__main__":
    main()
