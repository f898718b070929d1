"""Rewrite README.md's settings tables from the declarations (python scripts/settings-readme.py).

tests/test_settings_declared.py fails while README differs from what this writes.
"""

from __future__ import annotations

from pathlib import Path

from mailcircle import config, setting
from mailcircle.circle import settings as circle_settings

README = Path(__file__).parents[1] / "README.md"


def sections() -> dict[str, str]:
    """The text each README marker holds: the file `init` writes, and the circle table."""
    return {
        "file": setting.file_tables(config.DECLARED, config.TABLE_NOTES),
        "circle": setting.markdown_table(circle_settings.DECLARED),
    }


def main() -> None:
    text = README.read_text(encoding="utf-8")
    for marker, body in sections().items():
        text = setting.put_between(text, marker, body)
    README.write_text(text, encoding="utf-8")
    print(f"Rewrote the settings tables in {README}.")


if __name__ == "__main__":
    main()
