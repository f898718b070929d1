"""How well replies are trimmed: exact matches on our own cases and on the shared corpus.

Prints the share of replies whose trimmed critique is exactly the expected one, on
tests/replies/ (per kind: the first word of a case's name) and on the golden corpus in
../shared/corpora/email_reply_trimmer, then the time of trimming long lines and many blank
lines next to a baseline measured in the same run on the same input (``str.split`` over
the same text, which every reading of a mail pays anyway). No assertions.

    python bench/replies.py
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from mailcircle.inbound.reply import trim_reply

ROOT = Path(__file__).resolve().parents[1]
OURS = ROOT / "tests" / "replies"
SHARED = ROOT.parent / "shared" / "corpora" / "email_reply_trimmer"


def score(corpus: Path, kind: Callable[[str], str]) -> tuple[Counter[str], Counter[str], list[str]]:
    """(cases, exact matches) per kind, and the names that missed."""
    cases: Counter[str] = Counter()
    exact: Counter[str] = Counter()
    missed = []
    for path in sorted((corpus / "emails").glob("*.txt")):
        expected = (corpus / "trimmed" / path.name).read_text().strip()
        name = kind(path.stem)
        cases[name] += 1
        if trim_reply(path.read_text()).text == expected:
            exact[name] += 1
        else:
            missed.append(path.stem)
    return cases, exact, missed


def report(title: str, corpus: Path, kind: Callable[[str], str]) -> None:
    if not (corpus / "emails").is_dir():
        print(f"{title}: not found at {corpus}")
        return
    cases, exact, missed = score(corpus, kind)
    total, right = sum(cases.values()), sum(exact.values())
    print(f"{title}: {right}/{total} exact ({100 * right / max(total, 1):.0f}%)")
    for name in sorted(cases):
        print(f"  {name:<30} {exact[name]:>3}/{cases[name]:<3}")
    for name in missed:
        print(f"  missed: {name}")


def best_of(runs: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def timing() -> None:
    inputs = {
        "100,000 spaces then a word": " " * 100_000 + "x",
        '100,000 ">"': ">" * 100_000,
        '100,000 "-" then a word': "-" * 100_000 + "x",
        "1,000,000 blank lines": "Words.\n" + "\n" * 1_000_000 + "more",
        "100,000 quoted lines": "Words.\n\nOn Mon, Ann <a@b.c> wrote:\n" + "> line\n" * 100_000,
    }
    print("time to trim (best of 3), against str.split over the same text:")
    for name, text in inputs.items():
        trimmed = best_of(3, lambda text=text: trim_reply(text))
        baseline = best_of(3, lambda text=text: text.split("\n"))
        print(f"  {name:<28} {trimmed * 1000:8.1f} ms  ({trimmed / baseline:,.0f}x split)")


def html_timing() -> None:
    """html_to_text on the HTML parts of tests/mails/, against stripping tags by a pattern
    (what a reader that keeps no line breaks would pay)."""
    import email
    import html
    import re

    from mailcircle.inbound.parse import html_to_text

    parts = []
    for path in sorted((ROOT / "tests" / "mails").glob("*.eml")):
        for part in email.message_from_bytes(path.read_bytes()).walk():
            if part.get_content_type() == "text/html":
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    parts.append(payload.decode("utf-8", "replace"))
    tags = re.compile(r"<[^<>]{0,2000}>")
    ours = best_of(3, lambda: [html_to_text(markup) for markup in parts * 200])
    baseline = best_of(3, lambda: [html.unescape(tags.sub("", markup)) for markup in parts * 200])
    each = ours / max(len(parts) * 200, 1) * 1e6
    ratio = ours / baseline
    print(
        f"HTML parts of tests/mails ({len(parts)}): {each:.0f} us each ({ratio:.0f}x tag-stripping)"
    )
    head = "<head>\r\n" * 100_000
    print(f"  an 800 KB mail of '<head>\\r\\n': {best_of(3, lambda: html_to_text(head)):.2f} s")


def main() -> None:
    report("our cases (tests/replies)", OURS, lambda stem: stem.split("-")[0])
    report("shared golden corpus", SHARED, lambda stem: stem.rstrip("_0123456789") or stem)
    timing()
    html_timing()


if __name__ == "__main__":
    main()
