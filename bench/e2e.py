"""End to end: the real `mailcircle serve` (edge, worker, sender) against a counting relay.

Eight smtplib clients (in a process of their own, as a real MTA would be) send ~3 KB mails
from the 20 members of a circle to `mailcircle serve` running as its own process; a
counting aiosmtpd server on loopback is its outgoing relay. Measured, each next to a
baseline taken in the same run (these machines are shared and noisy):

- accept rate: 250s per second heard by the clients, against a bare aiosmtpd server that
  only counts (same clients, same mails);
- delivered rate: the mails the relay received per second, from the first mail sent to
  the last answer delivered, against the bare server's rate;
- serve's CPU per mail (user + system of serve and any process it starts) and its memory:
  the sum of each process's peak resident set (pages shared between them counted in
  each), and the peak of their proportional set (PSS: each shared page counted once,
  split between the processes sharing it), sampled through the run;
- flat cost: the same on databases already holding many processed mails (30,000 and
  100,000 by default, seeded directly with SQL), for drafts and for critiques (replies to
  assignments carrying In-Reply-To and References, half of them to the circle's address
  as from a client that dropped the Reply-To); the ratio CPU per mail at N / fresh.

Each draft is answered by one acknowledgement, each critique by a delivery to the author
and a receipt to the reviewer. Loopback only; every run is bounded in count and time (a
run that misses its deadline prints what it got); no assertions on timing.

    python bench/e2e.py [--messages 1000] [--clients 8] [--sizes 0,30000,100000] [--rounds 1]
                        [--kinds drafts,critiques]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from aiosmtpd.controller import Controller

CIRCLE = "poets@example.org"
MEMBERS = 20
WAIT_SECONDS = 60  # any one socket operation; all clients connecting
LINE = "so much depends upon a red wheel barrow glazed with rain water beside\n"
TICK = os.sysconf("SC_CLK_TCK")
AUTHSERV = "mx.example.org"  # the receiving server whose verdicts the circle trusts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Counting:
    """The relay (and the bare baseline server): counts each mail and when it came."""

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0
        self.changed = threading.Condition()

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.changed:
            self.count += len(envelope.rcpt_tos)
            self.last = time.perf_counter()
            self.changed.notify_all()
        return "250 OK"

    def wait_for(self, count: int, deadline: float) -> bool:
        with self.changed:
            return self.changed.wait_for(
                lambda: self.count >= count, max(0.0, deadline - time.perf_counter())
            )


# --- the mails ---------------------------------------------------------------------------


def member(n: int) -> str:
    return f"member{n}@example.net"


def draft_mail(n: int, author: int) -> tuple[str, str, bytes]:
    msg = EmailMessage()
    msg["From"] = f"Member {author} <{member(author)}>"
    msg["To"] = CIRCLE
    msg["Subject"] = f"Draft {n}"
    msg["Message-ID"] = f"<e2e-draft-{n}-{time.monotonic_ns()}@example.net>"
    msg["Authentication-Results"] = f"{AUTHSERV}; dmarc=pass header.from=example.net"
    msg.set_content(f"Ask: does the ending land?\n\nDraft {n}\n" + LINE * 42)
    return member(author), CIRCLE, msg.as_bytes(policy=SMTP)


def critique_mail(n: int, reviewer: int, token: str, assignment_mid: str) -> tuple[str, str, bytes]:
    """A reply to an assignment; every other one from a client that dropped our Reply-To,
    so it comes to the circle's address and finds its assignment by its References."""
    to = f"poets+c-{token}@example.org" if n % 2 else CIRCLE
    msg = EmailMessage()
    msg["From"] = f"Member {reviewer} <{member(reviewer)}>"
    msg["To"] = to
    msg["Subject"] = "Re: Please critique"
    msg["Message-ID"] = f"<e2e-crit-{n}-{time.monotonic_ns()}@example.net>"
    msg["In-Reply-To"] = assignment_mid
    msg["References"] = f"<root-{n}@example.net> {assignment_mid}"
    msg["Authentication-Results"] = f"{AUTHSERV}; dmarc=pass header.from=example.net"
    quoted = "".join("> " + line for line in [LINE] * 16)
    msg.set_content(
        f"Critique {n}.\n"
        + "The second stanza sings; the last line could trust the reader more.\n" * 18
        + "\nOn Monday, Poets wrote:\n"
        + quoted
    )
    return member(reviewer), to, msg.as_bytes(policy=SMTP)


# --- the clients (a process of their own) ----------------------------------------------


def blast(port: int, mails: list[tuple[str, str, bytes]], clients: int) -> tuple[int, float]:
    """Send ``mails`` from ``clients`` threads in a separate process; (250s, seconds)."""
    deadline = WAIT_SECONDS + len(mails) / 5
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        try:
            accepted, seconds, errors = pool.apply_async(_blast_here, (port, mails, clients)).get(
                timeout=deadline
            )
        except multiprocessing.TimeoutError:
            print(f"  the clients did not finish {len(mails)} mails within {deadline:.0f} s")
            return 0, deadline
    if errors:
        print(f"  {len(errors)} of {clients} clients stopped; the first: {errors[0]}")
    return accepted, seconds


def _blast_here(
    port: int, mails: list[tuple[str, str, bytes]], clients: int
) -> tuple[int, float, list[str]]:
    shares = [mails[i::clients] for i in range(clients)]
    accepted = [0] * clients
    errors: list[str] = []
    start_line = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=WAIT_SECONDS) as conn:
                conn.ehlo()
                start_line.wait(timeout=WAIT_SECONDS)
                for mail_from, rcpt, raw in shares[index]:
                    conn.sendmail(mail_from, [rcpt], raw)
                    accepted[index] += 1
        except threading.BrokenBarrierError:
            errors.append("the clients could not all connect in time")
        except (smtplib.SMTPException, OSError) as err:
            errors.append(f"{type(err).__name__}: {err}")
            start_line.abort()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    try:
        start_line.wait(timeout=WAIT_SECONDS)
    except threading.BrokenBarrierError:
        pass
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return sum(accepted), time.perf_counter() - began, errors


# --- seeding ----------------------------------------------------------------------------


def seed(path: Path, processed: int, live_assignments: int) -> dict[str, list]:
    """A circle of 20 members whose database holds ``processed`` mails already dealt with
    (half drafts with their rounds and assignments, half critiques, and every answer in
    the outbox, sent), and ``live_assignments`` open assignments for the critiques to
    answer. Written with SQL directly: fast. Returns the live assignments."""
    from mailcircle import db as database
    from mailcircle.circle import circles
    from mailcircle.circle.rounds import latest_start
    from mailcircle.clock import SystemClock, iso
    from mailcircle.db import transaction

    clock = SystemClock()
    db = database.connect(path)
    circle = circles.create(db, clock, CIRCLE, "Poets")
    slot = latest_start(clock.now(), circle.config)  # no round is due while we measure
    rng = random.Random(5)
    drafts = processed // 2
    per_round = 20
    rounds = max(1, drafts // per_round)
    first_day = slot - timedelta(days=7 * rounds)
    with transaction(db):
        db.execute("UPDATE circles SET created_at = ?", [iso(first_day - timedelta(days=1))])
        db.conn.executemany(
            "INSERT INTO members (id, circle_id, email, name, status, joined_at, bounce_token,"
            " digest) VALUES (?, ?, ?, ?, 'active', ?, ?, 'off')",
            [
                (n, circle.id, member(n), f"Member {n}", iso(first_day), f"vb{n}")
                for n in range(1, MEMBERS + 1)
            ],
        )
        raw = b"From: member1@example.net\r\nSubject: old\r\n\r\n" + LINE.encode() * 4
        spool, subs, assigns, crits, out = [], [], [], [], []
        serial = assignment = 0
        for number in range(1, rounds + 1):
            at = first_day + timedelta(days=7 * (number - 1))
            when = iso(at)
            for _ in range(per_round):
                if serial >= drafts:
                    break
                serial += 1
                author = serial % MEMBERS + 1
                mid = f"<old-{serial}@example.net>"
                spool.append((serial, when, member(author), CIRCLE, circle.id, mid, raw))
                subs.append((serial, circle.id, author, serial, mid, f"Old {serial}", when))
                out.append((circle.id, "submission_ack", f"<ack-{serial}@x>", when))
                for k in (1, 2):
                    assignment += 1
                    reviewer = (author + 3 * k) % MEMBERS + 1
                    done = rng.random() < 0.9
                    assigns.append(
                        (
                            assignment,
                            number,
                            serial,
                            reviewer,
                            f"old{assignment}",
                            "done" if done else "expired",
                            when,
                            f"<asg-{assignment}@x>",
                        )
                    )
                    out.append((circle.id, "assignment", f"<asg-{assignment}@x>", when))
                    if done and len(crits) < processed - drafts:
                        crits.append(
                            (
                                assignment,
                                f"<crit-{assignment}@x>",
                                when,
                                f"oldr{assignment}",
                                f"<del-{assignment}@x>",
                            )
                        )
                        out.append((circle.id, "critique_delivery", f"<del-{assignment}@x>", when))
                        out.append((circle.id, "critique_receipt", f"<rec-{assignment}@x>", when))
            db.execute(
                "INSERT INTO rounds (id, circle_id, number, starts_at, status)"
                " VALUES (?, ?, ?, ?, 'closed')",
                [number, circle.id, number, iso(slot) if number == rounds else when],
            )
        # This round's drafts, with the open assignments the critiques answer.
        live = []
        for k in range(live_assignments):
            serial += 1
            author = k % MEMBERS + 1
            reviewer = (author + 1 + k // MEMBERS % (MEMBERS - 1)) % MEMBERS + 1
            if reviewer == author:
                reviewer = author % MEMBERS + 1
            mid = f"<live-{serial}@example.net>"
            when = iso(slot)
            spool.append((serial, when, member(author), CIRCLE, circle.id, mid, raw))
            subs.append((serial, circle.id, author, serial, mid, f"Live {serial}", when))
            assignment += 1
            token = f"live{k:08x}"  # the same in every seeded database
            amid = f"<assignment-live-{k}@example.org>"
            assigns.append((assignment, rounds, serial, reviewer, token, "open", when, amid))
            live.append((reviewer, token, amid))
        db.conn.executemany(
            "INSERT INTO spool (id, received_at, source, mail_from, rcpt_to, circle_id,"
            " message_id, dedupe_key, size, raw, status, processed_at)"
            " VALUES (?, ?, 'smtp', ?, ?, ?, ?, ?, 200, ?, 'done', ?)",
            [(i, w, f, r, c, m, m, raw_, w) for i, w, f, r, c, m, raw_ in spool],
        )
        db.conn.executemany(
            "INSERT INTO submissions (id, circle_id, member_id, spool_id, message_id, title,"
            " body, word_count, status, submitted_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 'old words', 2, 'assigned', ?)",
            subs,
        )
        due = iso(slot + timedelta(days=7))
        db.conn.executemany(
            "INSERT INTO assignments (id, round_id, submission_id, reviewer_id, token, status,"
            " assigned_at, due_at, message_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (a, r, s, v, t, st, w, due if st == "open" else w, m)
                for a, r, s, v, t, st, w, m in assigns
            ],
        )
        db.conn.executemany(
            "INSERT INTO critiques (assignment_id, spool_id, message_id, body, received_at,"
            " token, delivered_message_id) VALUES (?, 1, ?, 'Lovely.', ?, ?, ?)",
            crits,
        )
        db.conn.executemany(
            "INSERT INTO outbox (circle_id, purpose, message_id, mail_from, rcpt_to, raw,"
            " status, attempts, next_attempt_at, created_at, sent_at)"
            " VALUES (?, ?, ?, '', 'x@example.net', x'00', 'sent', 1, ?, ?, ?)",
            [(c, p, m, w, w, w) for c, p, m, w in out],
        )
    db.close()
    return {"live": live}


# --- serve, its CPU and memory -----------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it (the worker may run as a process of its own)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def cpu_seconds(root: int) -> float:
    total = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def tree_mb(root: int, file: str, field: str) -> float:
    """A field counted in kB in /proc/PID/``file``, summed over ``root`` and its processes."""
    total = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/{file}") as lines:
                total += next((int(ln.split()[1]) for ln in lines if ln.startswith(field)), 0)
        except OSError:
            continue
    return total / 1024


def peak_rss_mb(root: int) -> float:
    """The sum of each process's peak resident set (shared pages counted in each)."""
    return tree_mb(root, "status", "VmHWM:")


def pss_mb(root: int) -> float:
    """The proportional set size of ``root`` and its processes together, now."""
    return tree_mb(root, "smaps_rollup", "Pss:")


class PeakPss:
    """Samples the process tree's PSS four times a second; ``peak`` is the highest seen."""

    def __init__(self, root: int) -> None:
        self.root, self.peak = root, 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, pss_mb(self.root))
            if self._done.wait(0.25):
                return

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return self.peak


def serve(folder: Path, db_path: Path, smtp_port: int, relay_port: int) -> subprocess.Popen:
    settings = folder / "mailcircle.toml"
    from mailcircle.config import InboundSettings

    trusted = ""  # a version that checks senders trusts our receiving server's verdicts
    if "trusted_authserv_ids" in InboundSettings.__dataclass_fields__:
        trusted = f'trusted_authserv_ids = ["{AUTHSERV}"]\n'
    settings.write_text(
        f'database = "{db_path}"\n[inbound]\nsmtp = "127.0.0.1:{smtp_port}"\nlmtp = ""\n'
        f'{trusted}[outbound]\nrelay = "127.0.0.1:{relay_port}"\n'
    )
    log = open(folder / "serve.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailcircle", "--config", str(settings), "serve"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=folder,
    )
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited with {proc.returncode}; see {folder / 'serve.log'}")
        try:
            with socket.create_connection(("127.0.0.1", smtp_port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("serve did not listen within a minute")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# --- the runs ------------------------------------------------------------------------------


def run_bare(mails: list[tuple[str, str, bytes]], clients: int) -> float:
    handler = Counting()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        accepted, seconds = blast(port, mails, clients)
    finally:
        controller.stop()
    return accepted / seconds if seconds else 0.0


def run_serve(
    folder: Path, template: Path, mails: list[tuple[str, str, bytes]], answers: int, clients: int
) -> dict[str, float]:
    """One run of serve on a copy of ``template``: rates, CPU per mail, peak memory."""
    db_path = folder / "run.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    shutil.copy(template, db_path)
    relay = Counting()
    relay_port = free_port()
    controller = Controller(relay, hostname="127.0.0.1", port=relay_port)
    controller.start()
    smtp_port = free_port()
    proc = serve(folder, db_path, smtp_port, relay_port)
    try:
        time.sleep(1.0)  # the scheduler's first look, imports: settle before timing
        cpu_before = cpu_seconds(proc.pid)
        pss = PeakPss(proc.pid)
        began = time.perf_counter()
        accepted, seconds = blast(smtp_port, mails, clients)
        expected = answers * accepted
        complete = relay.wait_for(expected, time.perf_counter() + WAIT_SECONDS + len(mails) / 5)
        finished = relay.last if relay.count else time.perf_counter()
        cpu = cpu_seconds(proc.pid) - cpu_before
        rss = peak_rss_mb(proc.pid)
        peak_pss = pss.stop()
    finally:
        stop(proc)
        controller.stop()
    if not complete:
        print(f"  (only {relay.count} of {expected} answers were delivered in time)")
    return {
        "accept": accepted / seconds if seconds else 0.0,
        "delivered": relay.count / max(finished - began, 1e-9),
        "cpu_ms": 1000 * cpu / max(accepted, 1),
        "rss": rss,
        "pss": peak_pss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000, help="mails per run")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--sizes", default="0,30000,100000", help="processed mails to seed")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each, interleaved")
    parser.add_argument("--kinds", default="drafts,critiques", help="which mails to send")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    rows: list[tuple[str, int, dict[str, float], float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        templates = {}
        for size in sizes:
            started = time.perf_counter()
            templates[size] = folder / f"seed-{size}.db"
            live = seed(templates[size], size, args.messages)["live"]
            print(f"seeded {size:,} processed mails in {time.perf_counter() - started:.1f} s")
        drafts = [draft_mail(n, n % MEMBERS + 1) for n in range(args.messages)]
        critiques = [
            critique_mail(n, reviewer, token, mid) for n, (reviewer, token, mid) in enumerate(live)
        ]
        print(
            f"{args.messages} mails per run from {args.clients} clients and {MEMBERS} members;"
            f" {args.rounds} round(s); {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        )
        for kind, mails, answers in (("drafts", drafts, 1), ("critiques", critiques, 2)):
            if kind not in args.kinds.split(","):
                continue
            for size in sizes:
                runs, bares = [], []
                for _ in range(args.rounds):
                    bares.append(run_bare(mails, args.clients))
                    runs.append(run_serve(folder, templates[size], mails, answers, args.clients))
                median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
                rows.append((kind, size, median, statistics.median(bares)))
                print(
                    f"  {kind:<9} at {size:>7,}: accept {median['accept']:5.0f}/s"
                    f" (bare {rows[-1][3]:5.0f}/s), delivered {median['delivered']:5.0f}/s,"
                    f" CPU {median['cpu_ms']:5.1f} ms/mail, peak {median['rss']:4.0f} MB"
                    f" (PSS {median['pss']:4.0f} MB)",
                    flush=True,
                )
    print()
    print(
        f"{'mails':<10}{'processed':>10}{'accept/s':>9}{'bare/s':>8}{'ratio':>7}"
        f"{'delivered/s':>12}{'d/bare':>7}{'CPU ms/mail':>12}{'vs fresh':>9}"
        f"{'peak MB':>8}{'PSS MB':>7}"
    )
    fresh = {kind: m["cpu_ms"] for kind, size, m, _ in rows if size == sizes[0]}
    for kind, size, m, bare in rows:
        print(
            f"{kind:<10}{size:>10,}{m['accept']:>9.0f}{bare:>8.0f}{m['accept'] / bare:>7.2f}"
            f"{m['delivered']:>12.0f}{m['delivered'] / bare:>7.2f}{m['cpu_ms']:>12.1f}"
            f"{m['cpu_ms'] / fresh[kind]:>9.2f}{m['rss']:>8.0f}{m['pss']:>7.0f}"
        )
    print(f"(vs fresh: CPU per mail at that size / at {sizes[0]:,} processed; flat cost is ~1.0)")
    print(
        "(peak MB: the sum of each process's peak resident set; PSS MB: the peak of the"
        " processes' proportional set together, shared pages counted once)"
    )


if __name__ == "__main__":
    main()
