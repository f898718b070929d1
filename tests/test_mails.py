"""The fixture corpus in tests/mails/: how real mail clients answer an assignment.

Each .eml file is a reply (or an auto-reply, or a bounce) as a client writes it, named for
what it shows. {TOKEN} stands for the assignment's token, {BOUNCE} for Ben's VERP token,
{MID} for a Message-ID. Every file has its expected outcome below: the status of the
inbound mail and, for critiques, the exact critique text the author receives.
"""

from __future__ import annotations

import email
import email.utils
from pathlib import Path

import pytest
from conftest import MAILS, draft

from mailcircle.circle import assignments, members
from mailcircle.db import transaction
from mailcircle.inbound import spool
from mailcircle.inbound.process import Worker
from mailcircle.outbound.compose import Composer

CRITIQUE, HELD, AWAY, BOUNCE = "critique", "held", "away", "bounce"

EXPECTED: dict[str, tuple[str, str]] = {
    "apple-mail-reply.eml": (CRITIQUE, "Beautiful compression."),
    "base64-critique.eml": (CRITIQUE, "Encoded in base64, still a critique."),
    "bottom-posted-reply.eml": (
        CRITIQUE,
        "I read it three times. Each time the wheelbarrow got redder.",
    ),
    "dsn-exim-mailbox-full.eml": (BOUNCE, "mailbox_full 5.2.2"),
    "dsn-gmail-temporary.eml": (BOUNCE, "soft 4.2.1"),
    "dsn-postfix-user-unknown.eml": (BOUNCE, "hard 5.1.1"),
    "dutch-attribution.eml": (CRITIQUE, "Mooi gedaan."),
    "empty-reply-only-quote.eml": (HELD, "with no words of its own"),
    "fastmail-reply.eml": (CRITIQUE, "The white space carries the weight."),
    "forwarded-rfc822-part.eml": (
        CRITIQUE,
        "I forwarded the assignment to myself by mistake; here is my critique: good.",
    ),
    "french-attribution.eml": (CRITIQUE, "J'aime beaucoup la fin."),
    "german-attribution.eml": (CRITIQUE, "Sehr schön, aber zu kurz."),
    "gmail-inline-critique.eml": (
        CRITIQUE,
        "> so much depends\n> upon\n\nThe two-word line makes me pause. Good.\n\n"
        '> a red wheel\n> barrow\n\nSplitting "wheelbarrow" is the best moment.',
    ),
    "gmail-mobile-reply.eml": (CRITIQUE, "Short and sharp. Loved it."),
    "gmail-web-top-posted-reply.eml": (
        CRITIQUE,
        "The imagery is precise and the line breaks do real work.",
    ),
    "gmail-wrapped-attribution.eml": (CRITIQUE, "I'd cut the last line."),
    "html-only-reply.eml": (CRITIQUE, "First line of my critique.\nSecond line."),
    "html-only-poem-suggestion.eml": (
        CRITIQUE,
        "Try the breaks this way:\n\nso much\n    depends\nupon\n\n   a red wheel\nbarrow",
    ),
    "html-only-style-script-comment-pre.eml": (
        CRITIQUE,
        "The middle stanza carries the poem.\n\n  so much depends\n      upon\n\n"
        "That indent is what I mean.",
    ),
    "gmail-html-nested-blockquote.eml": (CRITIQUE, "> upon\nThe two-word line slows me down."),
    "ios-mail-sent-from-iphone.eml": (CRITIQUE, "Love the chickens."),
    "italian-attribution.eml": (CRITIQUE, "Bella immagine."),
    "latin1-critique.eml": (CRITIQUE, "Très joli, vraiment."),
    "malformed-bad-boundary.eml": (HELD, "is malformed"),
    "malformed-encoded-subject.eml": (CRITIQUE, "A broken subject does not stop a critique."),
    "malformed-missing-header-body-separator.eml": (
        CRITIQUE,
        "This line is not a header and there is no blank line\nStill a critique though.",
    ),
    "missing-message-id-reply.eml": (CRITIQUE, "No Message-ID, still a critique."),
    "nested-multipart-with-attachment.eml": (
        CRITIQUE,
        "My notes are attached, and in short: more verbs.",
    ),
    "out-of-office-auto-submitted.eml": (AWAY, "Auto-Submitted: auto-replied"),
    "out-of-office-french-subject.eml": (AWAY, "Réponse automatique"),
    "out-of-office-german-subject.eml": (AWAY, "Abwesenheitsnotiz"),
    "out-of-office-x-autoreply.eml": (AWAY, "X-Autoreply"),
    "outlook-bold-headers-html-only.eml": (CRITIQUE, "I would read this aloud at a wedding."),
    "outlook-desktop-original-message.eml": (
        CRITIQUE,
        "The title promises more than the poem delivers.",
    ),
    "outlook-mobile-get-outlook.eml": (CRITIQUE, "Lovely rhythm."),
    "outlook-web-from-sent-block.eml": (CRITIQUE, "Strong ending."),
    "portuguese-attribution.eml": (CRITIQUE, "Gostei muito."),
    "protonmail-reply.eml": (CRITIQUE, "Spare and good."),
    "quoted-printable-utf8-critique.eml": (
        CRITIQUE,
        "Très bien — the em dash in line three is perfect.",
    ),
    "reply-from-wrong-address.eml": (HELD, "came from mallory@example.com, not from the reviewer"),
    "reply-without-token-threads-by-in-reply-to.eml": (CRITIQUE, "My client dropped the Reply-To."),
    "signature-after-dash-dash.eml": (CRITIQUE, "Tighten the middle."),
    "spanish-attribution.eml": (CRITIQUE, "Me gusta el ritmo."),
    "thunderbird-flowed-critique.eml": (
        CRITIQUE,
        "This is a long critique line that Thunderbird wraps with a soft break because it "
        "uses format=flowed.\n\nSecond paragraph.",
    ),
    "thunderbird-flowed-quote-depth.eml": (
        CRITIQUE,
        "> so much depends\nI stop here every time; the line is the poem.\n> upon\n\nYes.",
    ),
    "thunderbird-flowed-delsp.eml": (CRITIQUE, "Splitwordsarefine with delsp=yes."),
    "unknown-8bit-charset.eml": (CRITIQUE, "Plain words survive a lying charset."),
    "vacation-precedence-bulk.eml": (AWAY, "Precedence: bulk"),
    "x-unknown-charset.eml": (CRITIQUE, "Even X-UNKNOWN reads fine."),
    "yahoo-reply.eml": (CRITIQUE, "Needs a stronger verb in line two."),
}


def test_every_fixture_has_an_expected_outcome() -> None:
    names = {path.name for path in MAILS.glob("*.eml")}
    assert names == set(EXPECTED)
    assert len(names) >= 40


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_mail(db, clock, poets, name: str) -> None:
    worker = Worker(db, clock, Composer(clock))
    [draft_id] = spool.store(
        db,
        clock,
        source="smtp",
        peer="",
        mail_from="ann@example.net",
        recipients=[("poets@example.org", 1)],
        raw=draft(),
    )
    assert worker.process(spool.get(db, draft_id)) == "done"
    with transaction(db):
        assignments.start_round(db, clock, Composer(clock), poets, clock.now())
    [assignment] = db.query("SELECT * FROM assignments")  # Ben reviews Ann's draft
    bounce = members.bounce_address(db, poets, "ben@example.net")
    raw = (
        (MAILS / name)
        .read_bytes()
        .replace(b"{TOKEN}", assignment["token"].encode())
        .replace(b"{BOUNCE}", bounce.split("bounce-")[1].split("@")[0].encode())
        .replace(b"{MID}", Path(name).stem.encode())
        .replace(b"<assignment@example.org>", assignment["message_id"].encode())
    )
    [(_, rcpt)] = email.utils.getaddresses([email.message_from_bytes(raw).get("To", "")])
    mail_from = "" if name.startswith("dsn-") else "ben@example.net"
    [spool_id] = spool.store(
        db, clock, source="smtp", peer="", mail_from=mail_from, recipients=[(rcpt, 1)], raw=raw
    )
    status = worker.process(spool.get(db, spool_id))
    outcome = spool.get(db, spool_id).outcome
    kind, expected = EXPECTED[name]
    critiques = [row["body"] for row in db.query("SELECT body FROM critiques")]
    delivered = list(db.query("SELECT rcpt_to FROM outbox WHERE purpose = 'critique_delivery'"))
    if kind == CRITIQUE:
        assert status == "done", outcome
        assert critiques == [expected]
        assert [row["rcpt_to"] for row in delivered] == ["ann@example.net"]
    elif kind == HELD:
        assert status == "held" and expected in outcome
        assert critiques == [] and delivered == []
    elif kind == AWAY:
        assert status == "done" and outcome.startswith("an automatic reply from ben@example.net")
        assert expected in outcome
        assert members.find(db, poets, "ben@example.net").status == "paused"
        assert critiques == [] and delivered == []
    else:
        hardness, code = expected.split()
        label = hardness.replace("_", " ")
        assert status == "done" and f"a {label} bounce ({code})" in outcome
        assert db.execute("SELECT kind, status FROM bounces").fetchall() == [(hardness, code)]
        replies = db.execute(
            "SELECT COUNT(*) FROM outbox WHERE spool_id = ?", [spool_id]
        ).fetchone()[0]
        assert replies == 0  # a bounce is never answered
