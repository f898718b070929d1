"""The worker's pipeline, called directly on spooled mail (unit level, real SQLite)."""

from __future__ import annotations

import email
import email.policy
import shutil
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import SHARED, corpus, draft, need_corpus, queued_mails, spool_one

from mailcircle.circle.circles import Circle
from mailcircle.inbound import spool
from mailcircle.inbound.process import Worker
from mailcircle.outbound.compose import Composer, default_templates_dir

CPYTHON_EMAIL_DATA = Path(email.__file__).parents[1] / "test" / "test_email" / "data"


@pytest.fixture
def worker(db, clock, poets: Circle) -> Worker:
    return Worker(db, clock, Composer(clock))


def test_a_draft_becomes_a_submission_and_an_ack_in_one_transaction(db, clock, worker) -> None:
    mail = spool_one(db, clock, draft())
    assert worker.process(mail) == "done"
    [submission] = db.query("SELECT * FROM submissions")
    assert submission["spool_id"] == mail.id
    [ack] = queued_mails(db)
    assert ack["To"] == "ann@example.net"
    assert ack["In-Reply-To"] == "<draft-1@example.net>"
    assert spool.get(db, mail.id).outcome == (
        "draft 'The Red Wheelbarrow' from ann@example.net queued as submission #1"
    )


def test_a_failure_rolls_back_keeps_the_mail_and_can_be_retried(
    db,
    clock,
    poets,
    tmp_path: Path,
) -> None:
    broken = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), broken)
    (broken / "submission_ack.txt").write_text("Subject: {{ no_such_field }}\n\nhi\n")
    mail = spool_one(db, clock, draft())

    assert Worker(db, clock, Composer(clock, broken)).process(mail) == "failed"
    failed = spool.get(db, mail.id)
    assert failed.outcome.startswith("could not be processed: MailcircleError: template")
    assert "Traceback" in failed.error and "no_such_field" in failed.error
    assert list(db.query("SELECT * FROM submissions")) == []  # rolled back with the ack
    assert failed.outcome.endswith("; ann@example.net was told it is kept for a moderator")
    [apology] = queued_mails(db)
    assert apology["Subject"] == "Kept for a moderator: The Red Wheelbarrow"
    assert "Traceback" not in apology.get_content() and "no_such_field" not in apology.get_content()

    spool.retry(db, mail.id)
    assert Worker(db, clock, Composer(clock)).process(spool.get(db, mail.id)) == "done"
    assert len(list(db.query("SELECT * FROM submissions"))) == 1
    assert [m["Subject"] for m in queued_mails(db)][
        1
    ] == "Queued for the next round: The Red Wheelbarrow"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Auto-Submitted": "auto-replied"}, "it says Auto-Submitted: auto-replied"),
        ({"X-Autoreply": "yes"}, "it carries X-Autoreply, so it is an automatic answer"),
        ({"Precedence": "bulk"}, "it says Precedence: bulk"),
        ({"List-Id": "<other.lists.example.com>"}, "it came through a mailing list"),
    ],
)
def test_automatic_mail_is_never_answered(db, clock, worker, headers, reason) -> None:
    mail = spool_one(db, clock, draft(subject="Out of office", extra=headers))
    assert worker.process(mail) == "ignored"
    assert spool.get(db, mail.id).outcome == f"not answered because {reason}"
    assert queued_mails(db) == [] and list(db.query("SELECT * FROM submissions")) == []


def test_a_bounce_is_kept_and_not_answered(db, clock, worker) -> None:
    mail = spool_one(db, clock, draft(sender="MAILER-DAEMON@example.net"), mail_from="")
    assert worker.process(mail) == "ignored"
    assert "a delivery report without a bounce token; not counted" in spool.get(db, mail.id).outcome
    assert queued_mails(db) == []


def test_a_non_member_from_a_list_is_refused_without_backscatter(db, clock, worker) -> None:
    raw = draft(sender="zed@elsewhere.net", extra={"Precedence": "list"})
    mail = spool_one(db, clock, raw, mail_from="zed@elsewhere.net")
    assert worker.process(mail) == "ignored"
    assert queued_mails(db) == []


def test_a_non_member_is_refused_and_told(db, clock, worker) -> None:
    mail = spool_one(db, clock, draft(sender="zed@elsewhere.net"), mail_from="zed@elsewhere.net")
    assert worker.process(mail) == "refused"
    assert spool.get(db, mail.id).outcome == (
        "a draft from zed@elsewhere.net, who is not a member; zed@elsewhere.net was told why"
    )
    [refusal] = queued_mails(db)
    assert refusal["To"] == "zed@elsewhere.net"


def test_an_empty_mail_is_refused_kindly(db, clock, worker) -> None:
    mail = spool_one(db, clock, draft(body="\n\n   \n"))
    assert worker.process(mail) == "refused"
    [answer] = queued_mails(db)
    assert answer["Subject"] == 'No draft found in "The Red Wheelbarrow"'
    assert "there was no draft in it" in answer.get_content()


def test_an_html_only_poem_keeps_its_lines(db, clock, worker) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ann@example.net", "poets@example.org", "Spring"
    msg["Message-ID"] = "<html-1@example.net>"
    msg.set_content(
        "<div>the rain</div><div>&nbsp; &nbsp;on the roof</div><p>and then</p>", subtype="html"
    )
    worker.process(spool_one(db, clock, msg.as_bytes()))
    [submission] = db.query("SELECT body FROM submissions")
    assert submission["body"] == "the rain\n   on the roof\nand then"


def test_a_draft_attached_as_txt_is_read(db, clock, worker) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ann@example.net", "poets@example.org", "Chapter 1"
    msg["Message-ID"] = "<att-1@example.net>"
    msg.set_content("")
    msg.add_attachment(
        b"It was a dark\nand stormy night.\n",
        maintype="text",
        subtype="plain",
        filename="chapter1.txt",
    )
    assert worker.process(spool_one(db, clock, msg.as_bytes())) == "done"
    [submission] = db.query("SELECT body, word_count FROM submissions")
    assert submission == {"body": "It was a dark\nand stormy night.", "word_count": 7}


def test_mail_without_message_id_is_deduplicated_by_content(db, clock, worker) -> None:
    raw = draft(message_id=None)
    first, second = spool_one(db, clock, raw), spool_one(db, clock, raw)
    assert worker.process(first) == "done"
    assert worker.process(second) == "duplicate"
    assert spool.get(db, second.id).outcome == (
        f"the same mail as inbound #{first.id}; nothing was done again"
    )
    assert len(queued_mails(db)) == 1


def robustness_set() -> list[Path]:
    files = sorted((SHARED / "corpora" / "mail_fixtures").rglob("*.eml"))
    files += sorted(CPYTHON_EMAIL_DATA.glob("msg_*.txt"))
    return files


def test_the_robustness_set_is_present() -> None:
    # CI must not pass by finding nothing to read.
    need_corpus(SHARED / "corpora" / "mail_fixtures", "*.eml", "the mail_fixtures corpus")
    need_corpus(CPYTHON_EMAIL_DATA, "msg_*.txt", "CPython's email test data")
    assert len(robustness_set()) > 100


@pytest.mark.parametrize(
    "path",
    corpus(robustness_set(), SHARED / "corpora", "the robustness mails"),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_odd_real_world_mail_never_crashes_the_worker(db, clock, worker, path: Path) -> None:
    mail = spool_one(db, clock, path.read_bytes())
    status = worker.process(mail)
    after = spool.get(db, mail.id)
    assert status in spool.STATUSES and status not in ("new", "failed"), after.error
    assert after.outcome
    for answer in queued_mails(db):  # whoever gets an answer gets readable text, never a traceback
        assert "Traceback" not in answer.get_content()


def test_a_flowed_poem_keeps_every_break_and_indent(db, clock, worker) -> None:
    # As Thunderbird sends it: soft breaks end in a space, indented lines are space-stuffed.
    flowed = (
        "so much depends\r\nupon\r\n\r\n   a red wheel\r\nbarrow\r\n\r\nglazed with rain \r\n"
        "water\r\n\r\n beside the white\r\nchickens\r\n"
    )
    raw = (
        "From: ann@example.net\r\nTo: poets@example.org\r\nSubject: Flowed\r\n"
        "Message-ID: <flowed@example.net>\r\n"
        "Content-Type: text/plain; charset=UTF-8; format=flowed\r\n\r\n" + flowed
    ).encode()
    assert worker.process(spool_one(db, clock, raw)) == "done"
    [submission] = db.query("SELECT body FROM submissions")
    assert submission["body"] == (
        "so much depends\nupon\n\n  a red wheel\nbarrow\n\nglazed with rain water\n\n"
        "beside the white\nchickens"
    )


def test_a_draft_attached_as_docx_is_read_and_forwarded(db, clock, worker) -> None:
    import io

    import docx

    document = docx.Document()
    document.add_paragraph("Chapter One")
    document.add_paragraph("It was a bright cold day in April.")
    buffer = io.BytesIO()
    document.save(buffer)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ann@example.net", "poets@example.org", "Novel"
    msg["Message-ID"] = "<docx@example.net>"
    msg.set_content("")
    msg.add_attachment(
        buffer.getvalue(),
        maintype="application",
        subtype="vnd.openxmlformats-officedocument.wordprocessingml.document",
        filename="novel.docx",
    )
    assert worker.process(spool_one(db, clock, msg.as_bytes())) == "done"
    [submission] = db.query("SELECT body, word_count FROM submissions")
    assert submission == {
        "body": "Chapter One\nIt was a bright cold day in April.",
        "word_count": 10,
    }


@pytest.mark.parametrize(
    "path",
    corpus(robustness_set(), SHARED / "corpora", "the robustness mails"),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_odd_real_world_mail_from_a_member_becomes_a_readable_draft_or_a_clear_answer(
    db,
    clock,
    worker,
    path: Path,
) -> None:
    # The same mails, as if a member had sent them: whatever the MIME, the draft comes out
    # as readable text, or the member is told why not; the worker never fails.
    raw = b"From: Ann <ann@example.net>\r\nMessage-ID: <%s@example.net>\r\n" % path.stem.encode()
    mail = spool_one(db, clock, raw + path.read_bytes())
    status = worker.process(mail)
    after = spool.get(db, mail.id)
    assert status in ("done", "refused", "ignored"), after.outcome + after.error
    if status == "done":
        [submission] = db.query("SELECT body FROM submissions")
        assert "mail_boundary" not in submission["body"]
        assert "\ufffd" * 3 not in submission["body"]  # no run of undecodable characters
