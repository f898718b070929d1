"""A draft's attached files: stored when the draft is taken (table draft_files), read from
there when a round starts or a backup is assigned; the spooled mail is never read again
for them. Erasing a member deletes them; withdrawing a draft keeps them, as its text."""

from __future__ import annotations

import email.policy
import io
import sqlite3
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage, Message
from pathlib import Path

import docx
import pytest
from conftest import MAILS, CapturingRelay, Serve, draft, queued_mails, send, spool_one

from mailcircle import db as database
from mailcircle.circle import assignments, circles, member_data, members, submissions
from mailcircle.circle.circles import Circle
from mailcircle.clock import FakeClock
from mailcircle.db import transaction
from mailcircle.inbound.process import Worker
from mailcircle.mail import attachments_of
from mailcircle.outbound.compose import Composer

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def docx_bytes(*paragraphs: str) -> bytes:
    document = docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


DOCX = docx_bytes("Chapter One", "It was a bright cold day in April.")


def draft_with_files(message_id: str = "<files@example.net>") -> bytes:
    """Ann's draft in the body, with a .docx, a .txt, a .pdf and a part without a name."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "Ann <ann@example.net>", "poets@example.org", "Novel"
    msg["Message-ID"] = message_id
    msg.set_content("Ask: does chapter one hold?\n\nThe chapter is attached, notes too.\n")
    msg.add_attachment(
        DOCX,
        maintype="application",
        subtype=DOCX_TYPE.split("/")[1],
        filename="chapter-one.docx",
    )
    msg.add_attachment("line one\n  line two, indented\n", filename="notes.txt")
    msg.add_attachment(
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n",
        maintype="application",
        subtype="pdf",
        filename="chapter-one.pdf",
    )
    nameless = EmailMessage()
    nameless.set_content(
        b"\x00\x01 no name",
        maintype="application",
        subtype="octet-stream",
        disposition="attachment",
    )
    msg.attach(nameless)
    return msg.as_bytes(policy=email.policy.SMTP)


def before(raw: bytes) -> tuple[tuple[str, str, bytes], ...]:
    """What the assignment mail carried before this change: the spooled mail re-parsed with
    ``attachments_of`` when the round started, a nameless part named 'draft'."""
    return tuple((a.filename or "draft", a.content_type, a.payload) for a in attachments_of(raw))


def attached(message: Message) -> tuple[tuple[str, str, bytes], ...]:
    """The files an assignment mail carries, as a reviewer's mail client reads them."""
    found = []
    for part in message.walk():
        if part.get_content_disposition() == "attachment":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found.append((part.get_filename() or "", part.get_content_type(), payload))
    return tuple(found)


EXPECTED_FILES = [
    ("chapter-one.docx", DOCX_TYPE),
    ("notes.txt", "text/plain"),
    ("chapter-one.pdf", "application/pdf"),
    ("draft", "application/octet-stream"),
]


def blank_the_spool(db) -> None:
    """As `members erase` leaves it: the spooled mail's bytes gone. A round that still read
    a draft's files from there would find none."""
    with transaction(db):
        db.execute("UPDATE spool SET raw = X'', size = 0")


# --- through real sockets: SMTP in, the capturing relay out ------------------------------------


def test_reviewers_get_the_files_of_a_draft_as_before_through_real_smtp(
    serve: Serve, relay: CapturingRelay, smtp_port: int
) -> None:
    for address, name in (("cid@example.net", "Cid"), ("dee@example.net", "Dee")):
        serve.cli("members", "add", "poets@example.org", address, "--name", name)
    serve.start(smtp_port)
    raw = draft_with_files()
    assert send(smtp_port, raw, mail_from="ann@example.net", to=["poets@example.org"]) == {}
    [ack] = relay.wait_for(1)
    assert ack.message["Subject"] == "Queued for the next round: Novel"

    db = database.connect(serve.config.parent / "circle.db")
    try:
        stored = db.execute(
            "SELECT filename, content_type, payload FROM draft_files ORDER BY position"
        ).fetchall()
        assert tuple(stored) == before(raw)  # taken with the draft, as the round read them
        blank_the_spool(db)
    finally:
        db.close()

    now = datetime.now(UTC)
    monday = (now + timedelta(days=7 - now.weekday() + 7)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    output = serve.cli("run-due", "--now", monday.isoformat())
    assert "poets@example.org: round 1 sent 3 assignments for 1 drafts" in output
    mails = relay.wait_for(1 + 3)
    sent = [m for m in mails if m.message["Subject"].startswith("Please critique")]
    assert sorted(r for m in sent for r in m.rcpt_tos) == [
        "ben@example.net",
        "cid@example.net",
        "dee@example.net",
    ]
    for assignment in sent:
        files = attached(assignment.message)
        assert [(name, kind) for name, kind, _ in files] == EXPECTED_FILES
        assert files == before(raw)  # the same names, types and bytes as before the change
        assert files[0][2] == DOCX  # byte for byte, as the author sent it
        text = assignment.message.get_body(("plain",))
        assert text is not None
        assert "The draft is attached: chapter-one.docx, notes.txt, chapter-one.pdf, draft." in (
            text.get_content()
        )
        assert "The chapter is attached, notes too." in text.get_content()


# --- the worker, rounds and backups, called directly ----------------------------------------


@pytest.fixture
def worker(db, clock: FakeClock, poets: Circle) -> Worker:
    for address, name in (("cid@example.net", "Cid"), ("dee@example.net", "Dee")):
        members.add(db, clock, poets, address, name)
    return Worker(db, clock, Composer(clock))


def start_round(db, clock: FakeClock, circle: Circle) -> None:
    with transaction(db):
        assignments.start_round(db, clock, Composer(clock), circle, clock.now())


def test_a_backup_reviewer_gets_the_same_files_with_the_spool_blanked(
    db, clock: FakeClock, poets: Circle, worker: Worker
) -> None:
    circle = circles.set_setting(db, poets, "reviews_per_draft", "2")
    raw = draft_with_files()
    assert worker.process(spool_one(db, clock, raw)) == "done"
    start_round(db, clock, circle)
    blank_the_spool(db)
    first = {row["reviewer_id"] for row in db.query("SELECT reviewer_id FROM assignments")}
    assert len(first) == 2
    away = members.get_by_id(db, min(first))
    with transaction(db):
        assert assignments.pass_on(db, clock, Composer(clock), circle, away) == 1
    [backup] = db.query("SELECT * FROM assignments WHERE backup_for IS NOT NULL")
    assert backup["reviewer_id"] not in first
    mails = queued_mails(db, "assignment")
    assert len(mails) == 3  # two in the round, then the backup's
    for message in mails:
        assert attached(message) == before(raw)
    assert mails[-1]["Message-ID"] == backup["message_id"]


def test_a_round_reads_the_files_of_all_its_drafts_in_one_query(
    db, clock: FakeClock, poets: Circle, worker: Worker
) -> None:
    circle = circles.set_setting(db, poets, "drafts_per_author", "5")
    circle = circles.set_setting(db, circle, "max_reviews_per_round", "5")
    sent = []
    for n in range(4):
        raw = draft_with_files(f"<files-{n}@example.net>")
        assert worker.process(spool_one(db, clock, raw)) == "done"
        sent.append(raw)
    plain = draft(message_id="<plain@example.net>")  # no files: none stored, none sent
    assert worker.process(spool_one(db, clock, plain)) == "done"
    assert db.execute("SELECT COUNT(DISTINCT submission_id) FROM draft_files").fetchone() == (4,)
    blank_the_spool(db)
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    try:
        start_round(db, clock, circle)
    finally:
        db.conn.set_trace_callback(None)
    assert len([s for s in statements if "draft_files" in s and "SELECT" in s]) == 1
    assert not [s for s in statements if "FROM spool" in s and "raw" in s]
    by_draft: dict[int, list[Message]] = {}
    for row, message in zip(
        db.query("SELECT submission_id FROM assignments ORDER BY id"),
        queued_mails(db, "assignment"),
        strict=True,
    ):
        by_draft.setdefault(row["submission_id"], []).append(message)
    assert sorted(by_draft) == [1, 2, 3, 4, 5]
    for submission_id, messages in by_draft.items():
        expected = before(sent[submission_id - 1]) if submission_id <= 4 else ()
        assert [attached(m) for m in messages] == [expected] * len(messages)


def test_which_parts_count_as_files_is_what_the_round_carried_before() -> None:
    # A single part is the text itself: a mail that is nothing but a file carries none on.
    only = (
        b"From: ann@example.net\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: application/pdf; name=poem.pdf\r\n"
        b"Content-Disposition: attachment; filename=poem.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n"
    )
    assert submissions.files_in(only) == ()
    assert submissions.files_in(draft()) == ()
    raw = draft_with_files()
    assert submissions.files_in(raw) == before(raw)
    assert [(n, t) for n, t, _ in submissions.files_in(raw)] == EXPECTED_FILES
    nested = (MAILS / "nested-multipart-with-attachment.eml").read_bytes()
    assert submissions.files_in(nested) == before(nested) != ()


# --- withdrawal, erasure, export, removal --------------------------------------------------------


def test_withdrawing_a_draft_keeps_its_files_as_it_keeps_its_text(
    db, clock: FakeClock, worker: Worker
) -> None:
    assert worker.process(spool_one(db, clock, draft_with_files())) == "done"
    with transaction(db):
        submissions.withdraw(db, 1)
    assert db.execute("SELECT body FROM submissions").fetchone()[0].startswith("The chapter")
    assert len(submissions.files_of(db, [1])[1]) == 4


def test_erasing_the_author_deletes_their_drafts_files_and_no_one_elses(
    db, clock: FakeClock, poets: Circle, worker: Worker
) -> None:
    assert worker.process(spool_one(db, clock, draft_with_files())) == "done"
    bens = draft_with_files("<bens@example.net>").replace(b"Ann <ann@", b"Ben <ben@")
    assert worker.process(spool_one(db, clock, bens, mail_from="ben@example.net")) == "done"
    ann_export = member_data.export(db, clock, poets, "ann@example.net", raw=False)
    assert [
        (f["submission_id"], f["filename"], f["content_type"]) for f in ann_export["draft_files"]
    ] == [(1, name, kind) for name, kind in EXPECTED_FILES]
    assert ann_export["draft_files"][3]["size"] == len(b"\x00\x01 no name")

    erased = member_data.erase(db, clock, Composer(clock), poets, "ann@example.net")
    assert "files attached to their drafts deleted: 4" in erased.lines()
    assert db.execute("SELECT DISTINCT submission_id FROM draft_files").fetchall() == [(2,)]
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    assert submissions.files_of(db, [2]) == {2: before(bens)}  # Ben's stay as they were


def test_removing_a_circle_removes_its_drafts_files(db, clock: FakeClock, worker: Worker) -> None:
    from mailcircle.circle import operations

    assert worker.process(spool_one(db, clock, draft_with_files())) == "done"
    circle = circles.get(db, "poets@example.org")
    counts = operations.remove_circle(db, circle, force=True)
    assert counts["draft_files"] == 4
    assert db.execute("SELECT COUNT(*) FROM draft_files").fetchone() == (0,)


# --- the migration ---------------------------------------------------------------------------


def test_the_migration_stores_the_files_of_drafts_taken_before(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    old = database.Database(conn)
    database.migrations.apply(old, stop_before="draft_files")
    assert "draft_files" not in old.table_names()
    with_files = draft_with_files()
    only_a_file = (
        b"From: ann@example.net\r\nMIME-Version: 1.0\r\nContent-Type: application/pdf;"
        b" name=p.pdf\r\nContent-Disposition: attachment; filename=p.pdf\r\n\r\n%PDF\r\n"
    )
    conn.executescript(
        "INSERT INTO circles (id, address, name, created_at) VALUES (1, 'p@x', 'P', '2026');"
        "INSERT INTO members (id, circle_id, email, joined_at) VALUES (1, 1, 'a@x', '2026');"
    )
    spooled = [with_files, draft(), only_a_file, b"", with_files]  # the fourth was erased
    for n, raw in enumerate(spooled, 1):
        conn.execute(
            "INSERT INTO spool (id, received_at, source, mail_from, rcpt_to, dedupe_key, size,"
            " raw) VALUES (?, '2026', 'smtp', 'a@x', 'p@x', ?, ?, ?)",
            [n, f"k{n}", len(raw), raw],
        )
        conn.execute(
            "INSERT INTO submissions (id, circle_id, member_id, spool_id, message_id, title,"
            " body, word_count, submitted_at) VALUES (?, 1, 1, ?, ?, 't', 'b', 1, '2026')",
            [n, n, f"<m{n}>"],
        )
    conn.close()

    db = database.connect(path)
    try:
        stored = submissions.files_of(db, range(1, 6))
        assert stored == {1: before(with_files), 5: before(with_files)}
        assert [(n, t) for n, t, _ in stored[1]] == EXPECTED_FILES
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM draft_files WHERE submission_id IN (1, 2)"
        ).fetchall()
        assert "USING INDEX" in " ".join(str(step[-1]) for step in plan)
    finally:
        db.close()
