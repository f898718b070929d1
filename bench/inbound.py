"""Inbound throughput: accepted mails per second over real SMTP, against a bare baseline.

Eight client threads (smtplib, one kept connection each), in a process of their own as a
real MTA would be, send ~5 KB mails to two servers, measured alternately in the same run
because these machines are shared and noisy:

- baseline: an aiosmtpd server whose handler only counts and says 250;
- mailcircle: mailcircle's own SMTP edge, which commits every mail to the SQLite spool
  (WAL, synchronous=FULL) before it says 250.

It prints each run, the median rate of each, and the ratio mailcircle/baseline (aim: at
least 0.70). After every mailcircle run it checks that each 250 has its spool row, and
exits 1 if any is missing, and likewise if any mail is refused or a client fails.
Loopback only; bounded in count and time (socket timeouts, and a deadline for each run);
no timing assertions.

    python bench/inbound.py [--messages 2000] [--clients 8] [--size 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import smtplib
import socket
import statistics
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import NoReturn

from aiosmtpd.controller import Controller

from mailcircle import db as database
from mailcircle.circle import circles
from mailcircle.clock import SystemClock
from mailcircle.config import HostPort
from mailcircle.inbound.smtp import InboundServer

CIRCLE = "poets@example.org"
WAIT_SECONDS = 60  # for any one socket operation, and for all clients to connect


def fail(message: str) -> NoReturn:
    print(f"FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_mail(n: int, size: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = "ann@example.net"
    msg["To"] = CIRCLE
    msg["Subject"] = f"Draft {n}"
    msg["Message-ID"] = f"<bench-{n}-{time.monotonic_ns()}@example.net>"
    line = "so much depends upon a red wheel barrow glazed with rain water\n"
    msg.set_content(line * max(1, size // len(line)))
    return msg.as_bytes(policy=SMTP)  # CRLF line ends, as on the wire


class CountingHandler:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        self.count += 1
        return "250 OK"


def blast(port: int, total: int, clients: int, size: int) -> tuple[int, float]:
    """Send ``total`` mails from ``clients`` threads in a separate process, so the clients
    do not compete with the server for this process's GIL; returns (250s, seconds).

    Exits 1 if any mail is refused or any client fails, or if the run outlasts its deadline.
    """
    deadline = WAIT_SECONDS + total / 10  # generous: 10 mails a second would be a broken run
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        try:
            accepted, seconds, errors = pool.apply_async(
                _blast_here, (port, total, clients, size)
            ).get(timeout=deadline)
        except multiprocessing.TimeoutError:
            fail(f"the clients did not finish {total} mails within {deadline:.0f} s")
    if errors:
        fail(f"{len(errors)} of {clients} clients stopped; the first: {errors[0]}")
    return accepted, seconds


def _blast_here(port: int, total: int, clients: int, size: int) -> tuple[int, float, list[str]]:
    """The client process: returns (250s received, seconds, what went wrong)."""
    per_client = [total // clients + (1 if i < total % clients else 0) for i in range(clients)]
    mails = [[make_mail(c * total + i, size) for i in range(n)] for c, n in enumerate(per_client)]
    accepted = [0] * clients
    errors: list[str] = []
    start_line = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=WAIT_SECONDS) as conn:
                conn.ehlo()
                start_line.wait(timeout=WAIT_SECONDS)
                for raw in mails[index]:
                    conn.sendmail("ann@example.net", [CIRCLE], raw)  # raises unless 250
                    accepted[index] += 1
        except threading.BrokenBarrierError:
            errors.append("the clients could not all connect in time")
        except (smtplib.SMTPException, OSError) as err:
            errors.append(f"{type(err).__name__}: {err}")
            start_line.abort()  # so no one waits at the start line for this client

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    try:
        start_line.wait(timeout=WAIT_SECONDS)
    except threading.BrokenBarrierError:
        pass  # a client failed and said why in errors
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    return sum(accepted), seconds, errors


def run_baseline(args: argparse.Namespace) -> float:
    handler = CountingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        accepted, seconds = blast(port, args.messages, args.clients, args.size)
    finally:
        controller.stop()
    if handler.count != accepted:
        fail(f"the baseline counted {handler.count} mails but {accepted} 250s were heard")
    return report("baseline", accepted, seconds)


def run_mailcircle(args: argparse.Namespace, folder: Path, round_no: int) -> float:
    db_path = folder / f"bench-{round_no}.db"
    db = database.connect(db_path)
    circles.create(db, SystemClock(), CIRCLE, "Poets")
    port = free_port()
    server = InboundServer(
        db_path, SystemClock(), HostPort("127.0.0.1", port), max_message_bytes=26_214_400
    )
    server.start()
    try:
        accepted, seconds = blast(port, args.messages, args.clients, args.size)
    finally:
        server.stop()
    committed = db.execute("SELECT COUNT(*) FROM spool").fetchone()[0]
    db.close()
    if committed != accepted:
        fail(f"LOST MAIL: {accepted} accepted with 250 but {committed} committed to the spool")
    return report("mailcircle", accepted, seconds)


def report(name: str, accepted: int, seconds: float) -> float:
    rate = accepted / seconds
    print(f"  {name:<11}{accepted:>9} {seconds:>8.2f} {rate:>8.0f}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="mails per run")
    parser.add_argument("--clients", type=int, default=8, help="concurrent SMTP clients")
    parser.add_argument("--size", type=int, default=5000, help="approximate bytes per mail")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, alternating")
    args = parser.parse_args()

    runs: dict[str, list[float]] = {"baseline": [], "mailcircle": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        blast_small(folder)
        print(
            f"{args.messages} mails of ~{args.size} bytes from {args.clients} clients, "
            f"{args.rounds} rounds"
        )
        print(f"  {'server':<11}{'messages':>9} {'seconds':>8} {'msgs/s':>8}")
        for round_no in range(args.rounds):
            runs["baseline"].append(run_baseline(args))
            runs["mailcircle"].append(run_mailcircle(args, folder, round_no))
    base, ours = (statistics.median(runs[k]) for k in ("baseline", "mailcircle"))
    print(
        f"median: baseline {base:.0f} msgs/s, mailcircle {ours:.0f} msgs/s "
        "(every accepted mail committed)"
    )
    print(f"ratio mailcircle/baseline: {ours / base:.2f} (aim >= 0.70)")


def blast_small(folder: Path) -> None:
    """A short warm-up of both paths so imports and first connections are not timed."""
    small = argparse.Namespace(messages=80, clients=2, size=1000)
    port = free_port()
    controller = Controller(CountingHandler(), hostname="127.0.0.1", port=port)
    controller.start()
    blast(port, small.messages, small.clients, small.size)
    controller.stop()
    db_path = folder / "warmup.db"
    db = database.connect(db_path)
    circles.create(db, SystemClock(), CIRCLE, "Poets")
    db.close()
    server = InboundServer(
        db_path,
        SystemClock(),
        HostPort("127.0.0.1", port := free_port()),
        max_message_bytes=1_000_000,
    )
    server.start()
    blast(port, small.messages, small.clients, small.size)
    server.stop()


if __name__ == "__main__":
    main()
