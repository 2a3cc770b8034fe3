"""The service layer never imports the worker layer: API and workers meet in the backend."""

from __future__ import annotations

import ast
from pathlib import Path

import offload.service

SERVICE = Path(offload.service.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_service_modules_do_not_import_the_worker() -> None:
    modules = sorted(SERVICE.glob("*.py"))
    assert len(modules) > 5
    for path in modules:
        bad = {
            m
            for m in imported_modules(path)
            if m == "offload.cli" or m.startswith("offload.worker")
        }
        assert not bad, f"{path.name} imports {bad}"
