"""We know what we sent: replies that quote the whole assignment, through real SMTP.

The circle runs in-process with a fake clock (the harness of test_six_weeks.py); reviewers
answer over SMTP as Thunderbird (format=flowed, the whole assignment quoted, comments
between the draft's lines) and Gmail (its attribution wrapped after the "<") would; the
capturing relay shows what the author receives.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Captured, CapturingRelay
from hypothesis import given, settings
from hypothesis import strategies as st
from test_six_weeks import Circle

from mailcircle.inbound.reply import trim_reply

POEM = "so much depends\nupon\n\n   a red wheel\nbarrow\n\nglazed with rain\nwater\n"


@pytest.fixture
def circle(tmp_path: Path, relay: CapturingRelay) -> Iterator[Circle]:
    running = Circle(tmp_path, relay)
    yield running
    running.service.stop()
    running.db.close()


def _assignment(circle: Circle) -> Captured:
    circle.send("ann", "poets@example.org", "The Red Wheelbarrow", POEM)
    circle.new_mails()  # the acknowledgement
    circle.at("2026-03-09T09:00:00+00:00")
    circle.run_due()
    return next(m for m in circle.new_mails() if m.message["Subject"].startswith("Please"))


def _flowed(line: str, prefix: str, width: int = 72) -> list[str]:
    """One line as a format=flowed client writes it: soft breaks end in a space."""
    if len(prefix + line) <= width:
        return [prefix + line]
    words = line.split(" ")
    out: list[str] = []
    current = ""
    for word in words:
        if current and len(prefix) + len(current) + len(word) + 1 > width:
            out.append(prefix + current + " ")
            current = word
        else:
            current = f"{current} {word}" if current else word
    out.append(prefix + current)
    return out


def _send_raw(circle: Circle, sender: str, to: str, subject: str, headers: str, body: str) -> None:
    raw = (
        f"From: {sender.title()} <{sender}@example.net>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <reply-{sender}@example.net>\r\nMIME-Version: 1.0\r\n{headers}\r\n"
        + body.replace("\n", "\r\n")
    )
    with smtplib.SMTP("127.0.0.1", circle.port) as client:
        client.sendmail(f"{sender}@example.net", [to], raw.encode("utf-8"))
    circle.settle()


def _delivered_critique(circle: Circle) -> str:
    [delivery] = [m for m in circle.new_mails() if m.message["Subject"].startswith("A critique")]
    assert delivery.rcpt_tos == ["ann@example.net"]
    [body] = [row[0] for row in circle.db.execute("SELECT body FROM critiques").fetchall()]
    assert body in delivery.message.get_content().replace("\r\n", "\n")
    return str(body)


def test_a_thunderbird_full_quote_with_inline_comments_reaches_the_author_as_written(
    circle: Circle,
) -> None:
    assignment = _assignment(circle)
    reviewer = assignment.rcpt_tos[0].partition("@")[0]
    sent = assignment.message.get_content().replace("\r\n", "\n")
    assert "This round, Poets asks you" in sent  # the preamble a full quote carries
    comments = {
        "upon": "Two words on a line slow me down; I love that.",
        "barrow": "Splitting the wheelbarrow is the best moment, keep it exactly as it is even "
        "if someone tells you otherwise.",
    }
    body = ["On 09/03/2026 09:00, Poets wrote:"]
    for line in sent.rstrip("\n").split("\n"):
        body += _flowed(line, "> ") if line else [">"]
        if line.strip() in comments:
            body += ["", *_flowed(comments[line.strip()], ""), ""]
    body += ["", "-- ", reviewer.title()]
    _send_raw(
        circle,
        reviewer,
        assignment.message["Reply-To"],
        "Re: " + assignment.message["Subject"],
        'Content-Type: text/plain; charset="UTF-8"; format=flowed\r\n'
        "Content-Transfer-Encoding: 8bit\r\n",
        "\n".join(body) + "\n",
    )
    assert _delivered_critique(circle) == (
        "> so much depends\n> upon\n\n"
        "Two words on a line slow me down; I love that.\n\n"
        ">    a red wheel\n> barrow\n\n"
        "Splitting the wheelbarrow is the best moment, keep it exactly as it is even if "
        "someone tells you otherwise."
    )


def test_a_gmail_reply_with_its_attribution_wrapped_after_the_bracket(circle: Circle) -> None:
    assignment = _assignment(circle)
    reviewer = assignment.rcpt_tos[0].partition("@")[0]
    reply_to = assignment.message["Reply-To"]
    sent = assignment.message.get_content().replace("\r\n", "\n")
    quoted = "\n".join(("> " + line).rstrip() for line in sent.rstrip("\n").split("\n"))
    body = (
        "I'd cut the last line.\n\n"
        f"On Mon, Mar 9, 2026 at 9:00 AM Poets <\n{reply_to}> wrote:\n\n{quoted}\n"
    )
    _send_raw(
        circle,
        reviewer,
        reply_to,
        "Re: " + assignment.message["Subject"],
        'Content-Type: text/plain; charset="UTF-8"\r\nContent-Transfer-Encoding: 8bit\r\n',
        body,
    )
    assert _delivered_critique(circle) == "I'd cut the last line."


SENT = (
    'Hello Dan,\n\nThis round, Poets asks you to read "Wheelbarrow" by Ann (8 words) and send '
    "your critique by Monday 16 March.\n\nA few words on critique that helps:\n"
    "- Start with what works, and say why it works.\n- Be kind.\n\n"
    '---------- "Wheelbarrow" by Ann ----------\n\n' + POEM + "\n---------- end of draft "
    "----------\n\n--\nPoets. This draft is unpublished work: please keep it within the circle.\n"
)


def test_our_own_lines_are_never_the_reviewers_words_however_they_are_quoted() -> None:
    # Outlook: no ">" at all, the whole assignment re-wrapped at another width below a
    # header block.
    rewrapped = SENT.replace(
        'This round, Poets asks you to read "Wheelbarrow" by Ann (8 words) and send your',
        'This round, Poets asks you to read "Wheelbarrow" by\nAnn (8 words) and send your',
    )
    headers = (
        "From: Poets\nSent: Monday, March 9, 2026 9:00 AM\nTo: Dan\nSubject: Please critique\n\n"
    )
    result = trim_reply("Lovely.\n\n" + headers + rewrapped, ours=[SENT], draft=POEM)
    assert result.text == "Lovely."
    # The same, the reviewer writing in the old mail, under the first stanza.
    inline = rewrapped.replace("upon\n", "upon\nThe short line is the poem.\n", 1)
    result = trim_reply(headers + inline, ours=[SENT], draft=POEM)
    assert result.text == "so much depends\nupon\nThe short line is the poem."
    assert "Hello Dan," in result.elided and "Be kind." in result.elided
    assert "From: Poets" in result.elided


def test_draft_lines_a_reviewer_retypes_above_the_quote_are_theirs() -> None:
    reply = "Try it as:\nso much depends upon\n   a red wheel\n\n" + "\n".join(
        "> " + line for line in SENT.split("\n")
    )
    assert trim_reply(reply, ours=[SENT], draft=POEM).text == (
        "Try it as:\nso much depends upon\n   a red wheel"
    )


def test_without_a_draft_only_the_paragraph_above_a_comment_stays() -> None:
    quoted = "\n".join(("> " + line).rstrip() for line in SENT.split("\n"))
    reply = quoted.replace("> glazed with rain\n> water\n", "> glazed with rain\n> water\n\nWet!\n")
    result = trim_reply(reply, ours=[SENT])
    assert result.text == "> glazed with rain\n> water\n\nWet!"


def test_words_of_the_reviewer_that_echo_one_word_of_ours_stay() -> None:
    reply = "Be kind.\nI tried to be.\n\n" + "\n".join("> " + line for line in SENT.split("\n"))
    assert trim_reply(reply, ours=[SENT], draft=POEM).text == "Be kind.\nI tried to be."


def _rewrapped(text: str, width: int, prefix: str) -> str:
    """Our text as a client re-wraps it at another width, each line with ``prefix``."""
    out = []
    for line in text.split("\n"):
        words, current = line.split(" "), ""
        for word in words:
            if current and len(current) + 1 + len(word) > width:
                out.append(prefix + current)
                current = word
            else:
                current = f"{current} {word}" if current else word
        out.append((prefix + current).rstrip())
    return "\n".join(out)


@settings(max_examples=40, deadline=None)
@given(st.integers(16, 120), st.sampled_from(["> ", ">", "", "> > "]), st.booleans())
def test_our_text_quoted_at_any_width_is_never_the_reviewers(
    width: int, prefix: str, attributed: bool
) -> None:
    quoted = _rewrapped(SENT, width, prefix)
    if not prefix:  # unquoted, as Outlook does, below its header block
        quoted = "From: Poets <poets@example.org>\nSent: Monday, 9 March 2026 09:00\n\n" + quoted
    reply = (
        "On Mon, 9 Mar 2026 at 09:00, Poets <poets@example.org> wrote:\n" * attributed
    ) + quoted
    result = trim_reply("Thanks, more soon.\n\n" + reply, ours=[SENT], draft=POEM)
    assert result.text == "Thanks, more soon."
    inline = trim_reply(reply + "\n\nThe rain is the best of it.\n", ours=[SENT], draft=POEM)
    assert inline.text.endswith("The rain is the best of it.")
    assert "Hello Dan" not in inline.text and "critique" not in inline.text
