"""Imports point one way: down the layers a mail flows through (issue 9).

    face (cli, service, scheduler) -> edges (smtp, imap) -> spool (the spool, and the worker
    in process.py that drains it) -> pipeline (the rest of inbound/) -> circle (the domain)
    -> outbound (compose, outbox, sent, deliver) -> base

A module may import its own layer or any layer below it, never one above. Read from the
source with ``ast``, so an import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from test_face import database_uses

PACKAGE = Path(__file__).parents[1] / "mailcircle"

LAYERS = ("base", "outbound", "circle", "pipeline", "spool", "edges", "face")  # bottom first

FACE = {
    "mailcircle.cli",
    "mailcircle.children",
    "mailcircle.service",
    "mailcircle.scheduler",
    "mailcircle.__main__",
}
BASE = {
    "mailcircle",
    "mailcircle.addresses",
    "mailcircle.clock",
    "mailcircle.config",
    "mailcircle.db",
    "mailcircle.errors",
    "mailcircle.lease",
    "mailcircle.logs",
    "mailcircle.mail",
    "mailcircle.rows",
    "mailcircle.schema",
    "mailcircle.setting",
    "mailcircle.text",
}

# Imports that only serve type annotations (under ``if TYPE_CHECKING:``) and are allowed to
# name a higher layer, because they never run. Each one is listed, not allowed wholesale.
TYPE_ONLY = {
    # compose annotates its ``circle`` parameter; it reads .name, .address, .config ...
    ("mailcircle.outbound.compose", "mailcircle.circle.circles"),
}

# Upward imports that remain in files another branch is rewriting; each is named for what
# removes it. The test fails when one of these disappears, so the list stays true.
KNOWN: set[tuple[str, str]] = set()


def layer(module: str) -> str:
    if module in FACE or module.startswith("mailcircle.cli."):  # the command line's package
        return "face"
    if module in BASE:
        return "base"
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in ("circle", "outbound"):
        return parts[1]
    if len(parts) >= 2 and parts[1] == "inbound":
        if len(parts) == 2:
            return "base"  # the package's empty __init__
        if parts[2] in ("smtp", "imap"):
            return "edges"
        if parts[2] in ("spool", "process"):
            return "spool"  # the spool, and the worker that drains it into the pipeline
        return "pipeline"
    raise AssertionError(f"{module} has no layer: add it to FACE or BASE in {__file__}")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                found.update(id(n) for n in ast.walk(inner))
    return found


def imports() -> list[tuple[str, str, bool, int]]:
    """(importer, imported module, type-checking only, line) for every mailcircle import."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        tree = ast.parse(path.read_text(), str(path))
        typing_only = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # "from mailcircle.circle import members" imports the module members
                folder = PACKAGE.parent / node.module.replace(".", "/")
                targets = [
                    f"{node.module}.{alias.name}"
                    if (folder / f"{alias.name}.py").exists()
                    else node.module
                    for alias in node.names
                ]
            else:
                continue
            for target in dict.fromkeys(targets):
                if target == "mailcircle" or target.startswith("mailcircle."):
                    found.append((source, target, id(node) in typing_only, node.lineno))
    return found


def upward() -> list[tuple[str, str, bool, int]]:
    rank = {name: at for at, name in enumerate(LAYERS)}
    return [i for i in imports() if rank[layer(i[1])] > rank[layer(i[0])]]


def test_the_graph_is_read() -> None:
    found = imports()
    assert len({source for source, *_ in found}) > 30
    assert len(found) > 150
    assert ("mailcircle.outbound.compose", "mailcircle.mail") in {(s, t) for s, t, *_ in found}


def test_nothing_imports_upward() -> None:
    wrong = [
        f"{source} ({layer(source)}) imports {target} ({layer(target)}), line {line}"
        for source, target, typing_only, line in upward()
        if (source, target) not in KNOWN and not (typing_only and (source, target) in TYPE_ONLY)
    ]
    assert wrong == []


@pytest.mark.parametrize("pair", sorted(KNOWN | TYPE_ONLY))
def test_every_listed_exception_still_exists(pair: tuple[str, str]) -> None:
    assert pair in {(s, t) for s, t, *_ in upward()}, f"{pair} is fixed: take it off the list"


def test_a_type_only_import_stays_type_only() -> None:
    running = {(s, t) for s, t, typing_only, _ in upward() if not typing_only}
    assert not (running & TYPE_ONLY)


def test_the_pipeline_asks_the_domain_and_runs_no_sql_of_its_own() -> None:
    """All SQL on circle tables lives in the domain (circle/, and spool.py and outbound/
    for their own tables): the pipeline's steps call it by name."""
    pipeline = [
        path
        for path in sorted((PACKAGE / "inbound").glob("*.py"))
        if layer(module_name(path)) == "pipeline"
    ]
    assert any(path.name == "commands.py" for path in pipeline)
    found = [f"{path.name}:{use}" for path in pipeline for use in database_uses(path.read_text())]
    assert found == []
