"""Separating a reviewer's own words from what their mail client quoted (a first cut).

Pure: text in, (new text, trimmed text) out; the trimmed part is kept by the caller, never
destroyed. This version handles the common shapes: a quoted block at the end or the top
after an attribution line ("On ... wrote:", "-----Original Message-----", an Outlook
From:/Sent: block, and the French, German, Spanish, Italian, Dutch forms), a signature
after "-- ", and mobile taglines. Inline critiques keep the quoted lines they answer.
"""

from __future__ import annotations

import re

_ATTRIBUTION = re.compile(
    r"""^\s*(
        on\s.+\swrote:\s*$                      # On Tue, 3 Mar 2026, Ann wrote:
      | on\s.+\s<[^>]+>\s*$                     # a wrapped "On ... Ann <ann@x>" (wrote: below)
      | -{2,}\s*original\s+message\s*-{2,}      # -----Original Message-----
      | -{2,}\s*forwarded\s+message\s*-{2,}
      | le\s.+\sa\s+[ée]crit\s*:\s*$            # Le ... a écrit :
      | am\s.+\sschrieb.*:\s*$                  # Am ... schrieb Ann:
      | el\s.+\sescribi[óo]\s*:\s*$             # El ... escribió:
      | il\s.+\sha\s+scritto\s*:\s*$            # Il ... ha scritto:
      | op\s.+\sschreef.*:\s*$                  # Op ... schreef Ann:
      | from:\s.+$                              # Outlook's From:/Sent:/To: block
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_SIGNATURE = re.compile(
    r"^(--\s?|sent from my .+|get outlook for .+|sent from (yahoo|proton|mail for).*)$",
    re.IGNORECASE,
)


def _is_quote(line: str) -> bool:
    return line.lstrip().startswith(">")


def trim_reply(text: str) -> tuple[str, str]:
    """(the reviewer's own words, what was cut away)."""
    lines = text.replace("\r\n", "\n").split("\n")
    cut = len(lines)
    for index, line in enumerate(lines):
        if _ATTRIBUTION.match(line):
            # An attribution ends the new text, unless comments are interleaved with the
            # quotes after it (an inline critique): then everything is kept.
            if not _has_new_text(lines[index + 1 :]):
                cut = index
                break
        if _SIGNATURE.match(line.strip()) and line.strip():
            cut = index
            break
    kept, trimmed = lines[:cut], lines[cut:]
    # A quoted block at the very end (bottom of a top-posted reply) is trimmed too.
    while kept and (_is_quote(kept[-1]) or not kept[-1].strip()):
        trimmed.insert(0, kept.pop())
    while kept and not kept[0].strip():
        kept.pop(0)
    return "\n".join(kept).rstrip(), "\n".join(trimmed).strip("\n")


def _has_new_text(lines: list[str]) -> bool:
    """Whether unquoted text follows quoted text: the shape of an inline critique."""
    seen_quote = False
    for line in lines:
        if _is_quote(line):
            seen_quote = True
        elif line.strip() and seen_quote:
            if _SIGNATURE.match(line.strip()):
                return False
            return True
    return False
