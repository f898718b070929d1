"""The command line only reads its arguments, calls the domain and prints (issue 9).

All SQL on circle tables lives in the circle (mailcircle/circle/, the spool and the outbox):
no module of the mailcircle/cli/ package holds SQL text or uses the database object other
than by handing it to the domain. Each module stays small enough to read in one sitting.
Read from the source with ``ast``, so a query hidden in a function counts too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

CLI = Path(__file__).parents[1] / "mailcircle" / "cli"
MODULES = sorted(CLI.glob("*.py"))
MOST_LINES = 300

SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER)\b")
DATABASE_NAMES = ("db", "conn", "connection")


def _is_database(node: ast.expr) -> bool:
    """`db`, `state.db`, `self._db`, `conn` ... : an expression naming the database."""
    if isinstance(node, ast.Name):
        return node.id.lstrip("_") in DATABASE_NAMES
    if isinstance(node, ast.Attribute):
        return node.attr.lstrip("_") in DATABASE_NAMES
    return False


def database_uses(source: str) -> list[str]:
    """Each place the source holds SQL text or works the database itself, as `line: what`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if match := SQL.search(node.value):
                found.append(f"{node.lineno}: SQL text {match.group(0)}")
        elif isinstance(node, ast.Subscript) and _is_database(node.value):
            found.append(f"{node.lineno}: a table by name, {ast.unparse(node)}")
        elif isinstance(node, ast.Attribute) and _is_database(node.value):
            found.append(f"{node.lineno}: the database used directly, {ast.unparse(node)}")
    return found


def test_the_cli_is_a_package_of_modules() -> None:
    names = {path.stem for path in MODULES}
    assert {"__init__", "circle", "members", "inbox", "outbox", "serve"} <= names
    assert not (CLI.parent / "cli.py").exists()


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_no_sql_in_the_cli(path: Path) -> None:
    assert database_uses(path.read_text()) == []


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_each_cli_module_reads_in_one_sitting(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MOST_LINES


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ('state.db.execute("SELECT 1")', "SQL text SELECT"),
        ("rows = db.query(sql, [circle_id])", "db.query"),
        ('n = state.db["members"].count', "a table by name"),
        ("state._db.conn.commit()", "state._db.conn"),
        ('q = f"DELETE FROM members WHERE id = {n}"', "SQL text DELETE"),
    ],
)
def test_the_check_finds_sql(source: str, what: str) -> None:
    assert any(what in use for use in database_uses(source))


def test_the_check_lets_the_domain_be_called() -> None:
    source = (
        "found = circles.get(state.db, address)\n"
        "with transaction(state.db):\n"
        '    click.echo("Delete it? Select one, update later.")\n'
    )
    assert database_uses(source) == []
