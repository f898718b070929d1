"""Knowing our own words: which lines of a reply are text the circle sent.

A reply quotes our mail as its client pleases: with ">" or without, re-wrapped at another
width, blank lines kept or not. Lines are compared as runs of words (quote marks taken
off, case folded), and a line is ours when its words run, in order, somewhere in a mail
we sent: a suffix automaton over the words of our texts answers that in time linear in the
words read, and a match can go on from one line into the next, so a re-wrapped paragraph
is followed line by line whatever the widths.
"""

from __future__ import annotations

import functools

from mailcircle.inbound import reply_patterns as patterns
from mailcircle.inbound.reply_patterns import quote_depth, unquote

FRESH_WORDS = 4  # an unquoted line that does not go on from ours needs this many words


def words(text: str) -> list[str]:
    return text.casefold().split()


class _WordRuns:
    """Every run of consecutive words of some texts (a suffix automaton over words)."""

    def __init__(self, texts: tuple[str, ...], more_lines: tuple[str, ...] = ()) -> None:
        # The textbook construction, with its lists bound to local names: it runs for every
        # critique over the draft and our mail, so the attribute look-ups were its cost.
        nexts: list[dict[str, int]] = [{}]
        link = [-1]
        length = [0]
        self.lines: set[tuple[str, ...]] = set()
        last = 0
        for number, text in enumerate(texts):
            run = words(text)
            if number:
                run.insert(0, f"\x00{number}")  # no run crosses two texts
            for word in run:
                current = len(nexts)
                nexts.append({})
                link.append(0)
                length.append(length[last] + 1)
                state = last
                while state != -1:
                    moves = nexts[state]
                    if word in moves:
                        break
                    moves[word] = current
                    state = link[state]
                if state != -1:
                    target = nexts[state][word]
                    if length[state] + 1 == length[target]:
                        link[current] = target
                    else:
                        clone = len(nexts)
                        nexts.append(dict(nexts[target]))
                        link.append(link[target])
                        length.append(length[state] + 1)
                        while state != -1 and nexts[state].get(word) == target:
                            nexts[state][word] = clone
                            state = link[state]
                        link[target] = link[current] = clone
                last = current
            self.lines.update(tuple(words(line)) for line in text.split("\n"))
        for text in more_lines:  # a text whose runs are those of one above, its lines its own
            self.lines.update(tuple(words(line)) for line in text.split("\n"))
        self.next = nexts

    def follow(self, state: int, run: list[str]) -> int:
        """The state after reading ``run`` from ``state``; -1 when it leaves our texts."""
        for word in run:
            state = self.next[state].get(word, -1)
            if state == -1:
                return -1
        return state

    def mark(self, lines: list[str]) -> list[bool]:
        """Which lines are ours."""
        marks = [False] * len(lines)
        state = -1  # where the last of our lines left off (-1: nowhere)
        for at, line in enumerate(lines):
            run = words(unquote(line))
            if not run:
                continue
            quoted = quote_depth(line) > 0
            went_on = self.follow(state, run) if state != -1 else -1
            if went_on != -1:
                marks[at], state = True, went_on
                continue
            fresh = self.follow(0, run)
            if fresh != -1 and (
                quoted or len(run) >= FRESH_WORDS or (len(run) >= 2 and tuple(run) in self.lines)
            ):
                marks[at], state = True, fresh
            else:
                state = -1
        return marks


def _within(draft: str, texts: tuple[str, ...]) -> bool:
    """Whether the draft's words run, in order and whole, in one of ``texts``."""
    wanted = f" {' '.join(words(draft))} "
    return any(wanted in f" {' '.join(words(text))} " for text in texts)


@functools.lru_cache(maxsize=4)
def _draft_runs(draft: str) -> _WordRuns:
    """The draft's own runs: its few critiques, often read one after another, share them."""
    return _WordRuns((draft,))


class Known:
    """The texts of mail we sent that a reply may quote, and the draft among them."""

    def __init__(self, ours: tuple[str, ...], draft: str = "") -> None:
        if draft and _within(draft, ours):
            # Our mail carries the draft whole (an assignment does): its runs are there once
            # already, so it adds only its lines; the same automaton, built a third faster.
            self._ours = _WordRuns(ours, more_lines=(draft,))
        else:
            self._ours = _WordRuns(ours + ((draft,) if draft else ()))
        self._draft = _draft_runs(draft) if draft else None

    def ours_lines(self, lines: list[str]) -> list[bool]:
        return self._ours.mark(lines)

    def draft_lines(self, lines: list[str]) -> list[bool]:
        """Lines of the draft (all our lines when no draft was named)."""
        if self._draft is None:
            return self._ours.mark(lines)
        return self._draft.mark(lines)

    def drop_ours(self, lines: list[str], kinds: list[str]) -> list[bool]:
        """Which lines stay: our own lines go; a paragraph of the draft right above a
        comment stays, as a quote (its kind becomes ``q``)."""
        mine = self.ours_lines(lines)
        answerable = self.draft_lines(lines)
        count = len(kinds)
        # Above the first quote, attribution or header the reviewer writes: even lines of the
        # draft retyped there (to suggest other breaks, say) are theirs.
        first_marker = next((at for at, kind in enumerate(kinds) if kind in "bhq"), count)
        mine[:first_marker] = [False] * first_marker
        # The header block (From:, Sent: ...) right above our text is our mail's.
        for at in range(count - 1, 0, -1):
            if mine[at] and not mine[at - 1]:
                above = at - 1
                while above >= 0 and kinds[above] == "e":
                    above -= 1
                while above >= 0 and kinds[above] in "he":
                    mine[above] = kinds[above] == "h" or mine[above]
                    above -= 1
        # A quoted blank line next to our text is ours too.
        for at in range(count):
            if not mine[at] and kinds[at] == "q" and not patterns.unquote(lines[at]).strip():
                near = (at > 0 and mine[at - 1]) or (at + 1 < count and mine[at + 1])
                mine[at] = bool(near)
        for at in range(count - 1, 0, -1):  # spread the blank quoted lines' ownership upwards
            if mine[at] and not mine[at - 1] and kinds[at - 1] == "q":
                mine[at - 1] = not patterns.unquote(lines[at - 1]).strip()
        context = [False] * count
        for at in range(count):
            if kinds[at] != "t" or mine[at]:
                continue
            back = at - 1
            while back >= 0 and (kinds[back] == "e" or not patterns.unquote(lines[back]).strip()):
                back -= 1
            while back >= 0 and mine[back] and answerable[back] and not context[back]:
                if not patterns.unquote(lines[back]).strip():
                    break
                context[back] = True
                back -= 1
        for at in range(count):
            if context[at]:
                kinds[at] = "q"
        return [not mine[at] or context[at] for at in range(count)]
