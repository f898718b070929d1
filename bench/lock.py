"""How long the worker holds the database's write lock, per mail, against its whole time.

While the worker holds the write lock, the SMTP edge cannot commit the mail it is taking
(and so cannot say 250). The worker reads, trims, routes and composes before its first
write (issue 13), so the lock should cover only the writes. This runs the real Worker on a
real database file, in this process, over two kinds of mail:

- drafts (~400 words, from 20 members, each already answered before, so the reply checks
  read their earlier mail);
- critiques: replies to the assignments of a round of 100 such drafts, quoting the
  assignment.

For each it prints the milliseconds per mail, the milliseconds with the write lock held
(from BEGIN to COMMIT, as SQLite's trace shows them) and the share: the baseline is the
worker's own time in the same run. No network; no assertions on timing.

    python bench/lock.py [--drafts 600]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from sqlite_utils import Database

from mailcircle import db as database
from mailcircle.circle import assignments, circles, members
from mailcircle.clock import FakeClock
from mailcircle.db import transaction
from mailcircle.inbound import spool
from mailcircle.inbound.process import Worker
from mailcircle.outbound.compose import Composer

MEMBERS = 20
CIRCLE = "poets@example.org"


def mail(sender: str, to: str, subject: str, body: str, message_id: str, **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes(policy=SMTP)


class LockWatch:
    """Sums the time between each BEGIN and the COMMIT or ROLLBACK that ends it."""

    def __init__(self, db: Database) -> None:
        self.held = 0.0
        self._began: float | None = None
        db.conn.set_trace_callback(self._trace)

    def _trace(self, sql: str) -> None:
        now = time.perf_counter()
        head = sql.lstrip()[:8].upper()
        if head.startswith("BEGIN"):
            self._began = now
        elif head.startswith(("COMMIT", "ROLLBACK")) and self._began is not None:
            self.held += now - self._began
            self._began = None


def measure(worker: Worker, db: Database, spool_ids: list[int]) -> tuple[float, float]:
    """(ms per mail, ms with the write lock held per mail)."""
    watch = LockWatch(db)
    started = time.perf_counter()
    for spool_id in spool_ids:
        status = worker.process(spool.get(db, spool_id))
        if status != "done":
            raise SystemExit(f"inbound #{spool_id} ended {status}: the bench's mail is wrong")
    total = time.perf_counter() - started
    db.conn.set_trace_callback(None)
    return total / len(spool_ids) * 1000, watch.held / len(spool_ids) * 1000


def store(db: Database, clock: FakeClock, raw: bytes, to: str, sender: str) -> int:
    [spool_id] = spool.store(
        db, clock, source="smtp", peer="", mail_from=sender, recipients=[(to, 1)], raw=raw
    )
    return spool_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drafts", type=int, default=600, help="drafts to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = database.connect(Path(tmp) / "circle.db")
        clock = FakeClock()
        circle = circles.create(db, clock, CIRCLE, "Poets")
        for key, value in (("sender_check", "accept"), ("drafts_per_author", "20")):
            circle = circles.set_setting(db, circle, key, value)
        circle = circles.set_setting(db, circle, "max_reviews_per_round", "40")
        for n in range(MEMBERS):
            members.add(db, clock, circle, f"m{n}@example.net", f"Member {n}")
        worker = Worker(db, clock, Composer(clock))
        body = "so much depends upon a red wheel barrow glazed with rain water " * 30

        def drafts(first: int, count: int) -> list[int]:
            return [
                store(
                    db,
                    clock,
                    mail(f"m{n % MEMBERS}@example.net", CIRCLE, f"Poem {n}", body, f"<d{n}@x>"),
                    CIRCLE,
                    f"m{n % MEMBERS}@example.net",
                )
                for n in range(first, first + count)
            ]

        measure(worker, db, drafts(0, 100))  # the round's drafts; and earlier mail to read
        rows = [("drafts", *measure(worker, db, drafts(100, args.drafts)))]
        clock.advance(days=7)
        with transaction(db):
            assignments.start_round(db, clock, Composer(clock), circle, clock.now())
        critiques = []
        for row in db.query(
            "SELECT a.id, a.token, a.message_id, m.email FROM assignments a"
            " JOIN members m ON m.id = a.reviewer_id ORDER BY a.id"
        ):
            to = f"poets+c-{row['token']}@example.org"
            words = "The turn in the third stanza works; the ending hurries. " * 20
            reply = mail(
                row["email"],
                to,
                "Re: Please critique",
                f"{words}\n\nOn Monday, Poets wrote:\n> so much depends upon\n> a red wheel\n",
                f"<c{row['id']}@x>",
                In_Reply_To=row["message_id"],
            )
            critiques.append(store(db, clock, reply, to, row["email"]))
        rows.append(("critiques", *measure(worker, db, critiques)))
        db.close()
    print(f"{'mails':<10}{'ms/mail':>9}{'locked ms':>11}{'share':>7}")
    for kind, per_mail, locked in rows:
        print(f"{kind:<10}{per_mail:>9.2f}{locked:>11.2f}{locked / per_mail:>7.0%}")
    print("(share: of the worker's time, the part that keeps the SMTP edge from committing)")


if __name__ == "__main__":
    main()
