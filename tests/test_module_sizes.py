"""Modules stay small enough to read in one sitting (issue 14: no module over 400 lines, median
under 150, no function over 60 lines). A module that grows past a bound is split by what it
holds."""

from __future__ import annotations

import ast
import statistics
from pathlib import Path

import offload

SRC = Path(offload.__file__).parent
MAX_MODULE_LINES = 400
MAX_MEDIAN_LINES = 150
MAX_FUNCTION_LINES = 60


def _modules() -> dict[Path, str]:
    found = {path: path.read_text() for path in sorted(SRC.rglob("*.py"))}
    assert len(found) > 50, "offload's sources were not found"
    return found


def test_no_module_over_the_bound() -> None:
    sizes = {path: len(text.splitlines()) for path, text in _modules().items()}
    big = {str(path.relative_to(SRC)): n for path, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not big, f"split these modules (over {MAX_MODULE_LINES} lines): {big}"
    assert statistics.median(sizes.values()) < MAX_MEDIAN_LINES


def test_no_function_over_the_bound() -> None:
    long: list[str] = []
    for path, text in _modules().items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({lines})")
    assert not long, f"split these functions (over {MAX_FUNCTION_LINES} lines): {long}"
