"""Reading a draft from a mail's subject and text: pure, no database."""

from __future__ import annotations

from datetime import UTC, datetime

from mailcircle.circle.rounds import latest_start, next_round_start
from mailcircle.circle.settings import CircleSettings
from mailcircle.circle.submissions import read_draft

POEM = "  The fog comes\non little cat feet.\n\n    It sits looking\n  over harbor and city\n"


def test_a_poem_keeps_every_line_break_blank_line_and_indent() -> None:
    draft = read_draft("Fog", "\n\n" + POEM + "\n\n")
    assert draft.body == POEM.rstrip("\n")
    assert draft.title == "Fog"
    assert draft.word_count == 14


def test_an_ask_line_is_taken_off_the_top() -> None:
    draft = read_draft("Re: Fog", "ASK: is the cat too cute?\n\n" + POEM)
    assert draft.asks == "is the cat too cute?"
    assert draft.body.startswith("  The fog comes")
    assert draft.title == "Fog"


def test_ask_further_down_is_part_of_the_draft() -> None:
    draft = read_draft("", "First line\nAsk: not a question for reviewers\n")
    assert draft.asks == ""
    assert draft.title == "(untitled)"
    assert "Ask: not a question" in draft.body


def test_the_next_round_is_the_coming_monday_at_nine() -> None:
    wednesday = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
    defaults = CircleSettings()
    assert next_round_start(wednesday, defaults) == datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
    monday_early = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
    assert next_round_start(monday_early, defaults) == datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
    monday_nine = datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
    assert latest_start(monday_nine, defaults) == monday_nine
    assert next_round_start(monday_nine, CircleSettings(round_day="friday")) == datetime(
        2026, 3, 13, 9, 0, tzinfo=UTC
    )
    paris = CircleSettings(timezone="Europe/Paris")  # 09:00 in Paris is 08:00 UTC in March
    assert next_round_start(wednesday, paris) == datetime(2026, 3, 9, 8, 0, tzinfo=UTC)


def test_reading_a_draft_is_linear_in_its_blank_lines() -> None:
    """A 2 MB draft of a million blank lines once took 91 s (pop(0) per line)."""
    import time

    from mailcircle.circle.submissions import read_draft

    def seconds(blanks: int) -> float:
        text = "\n" * blanks + "Ask: does it scan?\n" + "\n" * blanks + "  a poem\n" + "\n" * blanks
        began = time.perf_counter()
        draft = read_draft("Blank verse", text)
        assert (draft.body, draft.asks) == ("  a poem", "does it scan?")
        return time.perf_counter() - began

    small, large = min(seconds(100_000) for _ in range(3)), min(seconds(200_000) for _ in range(3))
    assert large < small * 4 + 0.05  # doubling the input roughly doubles the time
