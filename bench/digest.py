"""Digests at scale: render and queue the weekly digest for 10,000 members.

Builds a circle of 10,000 members with a round of 2,000 drafts and their critiques, then
times ``send_due_digests`` (every member's digest rendered from the Jinja templates, text
and HTML, and written to the outbox in one transaction). As a baseline measured in the
same run it times rendering the same number of plain ``str.format`` mails with no database
work, and prints the ratio. Aim: the digests in under 10 s. No assertions on time.

    python bench/digest.py [--members 10000]
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


def build(db_path: Path, members: int, clock: FakeClock) -> circles.Circle:
    db = database.connect(db_path)
    rng = random.Random(7)
    circle = circles.create(db, clock, "poets@example.org", "Poets")
    now = iso(clock.now())
    with transaction(db):
        db["members"].insert_all(
            {
                "circle_id": circle.id,
                "email": f"m{n}@example.net",
                "name": f"Member {n}",
                "status": "active",
                "joined_at": now,
                "bounce_token": f"t{n}",
            }
            for n in range(1, members + 1)
        )
        db["spool"].insert(
            {
                "received_at": now,
                "source": "smtp",
                "mail_from": "",
                "rcpt_to": "poets@example.org",
                "dedupe_key": "x",
                "size": 0,
                "raw": b"",
            }
        )
        round_id = (
            db["rounds"].insert({"circle_id": circle.id, "number": 1, "starts_at": now}).last_pk
        )
        drafts = members // 5
        db["submissions"].insert_all(
            {
                "id": n,
                "circle_id": circle.id,
                "member_id": n,
                "spool_id": 1,
                "message_id": f"<d{n}@x>",
                "title": f"Draft {n}",
                "body": "",
                "word_count": 1000,
                "status": "assigned",
                "submitted_at": now,
            }
            for n in range(1, drafts + 1)
        )
        rows = []
        for n in range(1, drafts + 1):
            for reviewer in rng.sample(range(1, members + 1), 3):
                rows.append(
                    {
                        "round_id": round_id,
                        "submission_id": n,
                        "reviewer_id": reviewer,
                        "token": f"a{n}-{reviewer}",
                        "status": "open",
                        "assigned_at": now,
                        "due_at": iso(clock.now() + timedelta(days=7)),
                    }
                )
        db["assignments"].insert_all(rows)
    db.execute("CREATE INDEX IF NOT EXISTS bench_critiques ON critiques (assignment_id)")
    db.close()
    return circle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=10_000)
    args = parser.parse_args()
    clock = FakeClock(datetime(2026, 3, 8, 18, 0, tzinfo=UTC))  # a Sunday, digest time
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        circle = build(path, args.members, clock)
        db = database.connect(path)
        started = time.perf_counter()
        with transaction(db):
            sent = digest.send_due_digests(db, clock, Composer(clock), circle)
        ours = time.perf_counter() - started
        queued = db.execute("SELECT COUNT(*) FROM outbox WHERE purpose = 'digest'").fetchone()[0]
        db.close()
    template = "Hello {name},\n\nHere is your week in {circle}.\n{lines}\n"
    started = time.perf_counter()
    for n in range(args.members):
        template.format(name=f"Member {n}", circle="Poets", lines="  a line\n" * 10)
    base = time.perf_counter() - started
    print(f"{sent} digests rendered (text + HTML) and queued ({queued} in the outbox)")
    print(
        f"send_due_digests: {ours:.2f} s   baseline (str.format only): {base:.3f} s   "
        f"ratio {ours / base:.0f}x"
    )
    print(f"digests for {args.members} members: {ours:.2f} s (aim < 10 s)")


if __name__ == "__main__":
    main()
