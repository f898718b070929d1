"""Our own reply cases (tests/replies/): how clients and languages really write replies.

Each ``emails/NAME.txt`` is a reply as a client writes it; ``trimmed/NAME.txt`` is the exact
critique expected. The name's first word is the kind (attribution, wrapped, sameline,
headers, rewrapped, tagline, separator, android, sent, keep), as bench/replies.py counts them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailcircle.inbound.reply import trim_reply

CORPUS = Path(__file__).parent / "replies"
CASES = sorted(path.stem for path in (CORPUS / "emails").glob("*.txt"))


def test_the_corpus_is_there() -> None:
    assert len(CASES) >= 60, f"expected at least 60 reply cases in {CORPUS}"
    trimmed = {path.stem for path in (CORPUS / "trimmed").glob("*.txt")}
    assert trimmed == set(CASES), "every reply needs its expected critique, and only those"


@pytest.mark.parametrize("name", CASES)
def test_reply_case(name: str) -> None:
    text = (CORPUS / "emails" / f"{name}.txt").read_text()
    expected = (CORPUS / "trimmed" / f"{name}.txt").read_text()
    result = trim_reply(text)
    assert result.text == expected.strip()
    assert sorted((result.text + " " + result.elided).split()) == sorted(_words(text))


def _words(text: str) -> list[str]:
    """The words of a reply as the trimmer keeps them (a wrapped attribution is joined)."""
    return text.split()
