"""Reply trimming, held to the golden corpus in ../shared/corpora/email_reply_trimmer."""

from __future__ import annotations

import pytest
from conftest import SHARED, corpus, need_corpus

from mailcircle.inbound.reply import Segment, kind_of, trim_reply

GOLDEN = SHARED / "corpora" / "email_reply_trimmer"
CASES = sorted(p.name for p in (GOLDEN / "emails").glob("*.txt"))

# Where mailcircle deliberately gives another answer than the golden one, with the reason.
# (None today: the rules below meet all 64 golden answers, inline critiques included.)
WAIVERS: dict[str, str] = {}


def test_the_golden_corpus_is_there() -> None:
    need_corpus(GOLDEN / "emails", "*.txt", "the golden reply-trimming corpus")
    assert len(CASES) == 64, f"expected the 64 golden cases in {GOLDEN}"


@pytest.mark.parametrize("name", corpus(CASES, GOLDEN, "the golden reply-trimming corpus"))
def test_golden_case(name: str) -> None:
    if name in WAIVERS:
        pytest.skip(WAIVERS[name])
    text = (GOLDEN / "emails" / name).read_text()
    expected = (GOLDEN / "trimmed" / name).read_text()
    assert trim_reply(text).text == expected.strip()


@pytest.mark.parametrize("name", corpus(CASES, GOLDEN, "the golden reply-trimming corpus"))
def test_nothing_is_destroyed(name: str) -> None:
    """Every line of the mail is either in the critique or in what was cut away."""
    text = (GOLDEN / "emails" / name).read_text()
    result = trim_reply(text)
    kept = result.text.split("\n") + result.elided.split("\n")
    words = " ".join(kept).split()
    for line in text.split("\n"):
        for word in line.replace(">", " ").split():
            assert word in words or word.strip("<>-") in " ".join(words), (name, word)


INLINE = """On Mon, 9 Mar 2026 at 09:00, Poets <poets+c-abc@example.org> wrote:
> so much depends
> upon

I love this opening: two words on a line slow me down.

> a red wheel
> barrow

The break inside "wheelbarrow" surprised me, in a good way.

--\x20
Ben
Sent from my iPhone
"""


def test_an_inline_critique_keeps_the_comments_and_the_lines_they_answer() -> None:
    result = trim_reply(INLINE)
    assert result.text == (
        "> so much depends\n> upon\n\nI love this opening: two words on a line slow me down.\n\n"
        '> a red wheel\n> barrow\n\nThe break inside "wheelbarrow" surprised me, in a good way.'
    )
    assert result.segments == (
        Segment("so much depends\nupon", "I love this opening: two words on a line slow me down."),
        Segment(
            "a red wheel\nbarrow", 'The break inside "wheelbarrow" surprised me, in a good way.'
        ),
    )
    assert result.elided.startswith("On Mon, 9 Mar 2026 at 09:00, Poets")
    assert result.elided.endswith("-- \nBen\nSent from my iPhone")


@pytest.mark.parametrize(
    "attribution",
    [
        "On Tue, 3 Mar 2026, Ann Writer <ann@example.net> wrote:",
        "Le mar. 3 mars 2026 à 10:02, Poets <poets@example.org> a écrit :",
        "Am Di., 3. März 2026 um 10:02 Uhr schrieb Poets <poets@example.org>:",
        "El mar, 3 mar 2026 a las 10:02, Poets (<poets@example.org>) escribió:",
        "Il giorno mar 3 mar 2026 alle ore 10:02 Poets <poets@example.org> ha scritto:",
        "Op di 3 mrt. 2026 om 10:02 schreef Poets <poets@example.org>:",
        "-----Original Message-----",
    ],
)
def test_attribution_lines_in_several_languages_end_the_critique(attribution: str) -> None:
    mail = f"Beautiful and strange.\n\n{attribution}\n> so much depends\n> upon\n"
    assert kind_of(attribution) == "b"
    assert trim_reply(mail).text == "Beautiful and strange."


def test_an_outlook_reply_block_ends_the_critique() -> None:
    mail = (
        "The ending lands.\n\n________________________________\nFrom: Poets <poets@example.org>\n"
        "Sent: Monday, March 9, 2026 9:00 AM\nTo: Ben <ben@example.net>\n"
        "Subject: Please critique\n\nso much depends\nupon\n\nGet Outlook for Android\n"
    )
    assert trim_reply(mail).text == "The ending lands."


def test_a_bottom_posted_reply_keeps_only_the_new_words() -> None:
    mail = "On Mon, Poets wrote:\n> so much depends\n> upon\n\nShort, and it works.\n"
    result = trim_reply(mail)
    assert result.text == "Short, and it works."
    assert "> so much depends" in result.elided


def test_a_section_break_inside_a_long_critique_is_not_a_signature() -> None:
    body = "\n".join(f"Thought number {n}." for n in range(12))
    result = trim_reply(f"First part.\n\n***\n\n{body}\n")
    assert "Thought number 11." in result.text


def test_words_starting_like_an_attribution_are_not_swallowed_by_the_next_one() -> None:
    mail = "On time, as promised.\n\nOn Mon, Poets <poets@example.org> wrote:\n> so much\n"
    assert trim_reply(mail).text == "On time, as promised."
