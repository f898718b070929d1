"""The README's promises: the test command CI runs is the one a newcomer is given."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_ci_runs_the_readmes_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    command = [line for line in ci if ".venv/bin/pytest" in line]
    assert len(command) == 1
    assert f"```sh\n{command[0]}\n```" in readme


def test_the_readme_gives_exactly_two_commands_first() -> None:
    readme = (ROOT / "README.md").read_text()
    first_screen = readme.split("## What happens to a mail")[0]
    assert first_screen.count("```sh") == 2
    assert "mailcircle serve" in first_screen
