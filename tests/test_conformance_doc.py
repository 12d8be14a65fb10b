"""docs/jt2a-conformance.md cites tests that exist: every ``tests/FILE.py`` is a file of the suite and
every ``::name`` (``::prefix_*`` a prefix) a test function in the file cited last before it.

A renamed or deleted test would otherwise leave a row claiming evidence that no longer runs.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "jt2a-conformance.md"
CITATION = re.compile(r"`(tests/[\w/]+\.py)?(?:::([\w*\[\]-]+))?`")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")}


def _citations() -> list[tuple[str, str, str | None]]:
    """(row, file, test name or None) for every citation in the test column of the matrix."""
    out = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)]  # a pipe inside a cell is written \|
        if len(cells) < 7 or not re.match(r"^[\d.]+|^[a-z]", cells[1]) or cells[1] in ("req", "---"):
            continue
        current: str | None = None
        for file, name in CITATION.findall(cells[5]):
            current = file or current
            assert current is not None, (cells[1], name)
            out.append((cells[1], current, name or None))
    return out


def test_every_row_cites_a_test() -> None:
    rows = {row for row, _file, _name in _citations()}
    table = [re.split(r"(?<!\\)\|", line)[1].strip() for line in DOC.read_text(encoding="utf-8").splitlines()
             if line.startswith("| ") and not line.startswith(("| req", "|---"))]
    assert table and set(table) == rows, set(table) - rows


def test_every_cited_test_exists() -> None:
    missing = []
    for row, file, name in _citations():
        path = ROOT / file
        if not path.is_file():
            missing.append((row, file))
            continue
        if name is None:
            continue
        tests = _tests_in(path)
        found = any(t.startswith(name[:-1]) for t in tests) if name.endswith("*") else name.split("[")[0] in tests
        if not found:
            missing.append((row, f"{file}::{name}"))
    assert not missing, missing
