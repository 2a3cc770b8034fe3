"""What a name in one module refers to: imports and aliases resolved to dotted names."""

from __future__ import annotations

import ast

_BUILTINS = frozenset({"open"})


class Names:
    """The import aliases of one module: ``import requests as r`` makes ``r.get`` mean
    ``requests.get``, ``from time import sleep`` makes ``sleep`` mean ``time.sleep``.

    Imports anywhere in the module count (function-level imports are common in web code).
    Relative imports name the application's own modules and are left out.
    """

    def __init__(self, tree: ast.Module) -> None:
        self._aliases: dict[str, str] = {}
        self._defined: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self._aliases[alias.asname] = alias.name
                    else:
                        top = alias.name.partition(".")[0]
                        self._aliases[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    if alias.name != "*":
                        self._aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for stmt in tree.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self._defined.add(stmt.name)
            elif isinstance(stmt, ast.Assign):
                self._defined.update(t.id for t in stmt.targets if isinstance(t, ast.Name))

    def qualify(self, expr: ast.expr) -> str | None:
        """``expr`` as a dotted name rooted at an import (``builtins.open`` for the builtin),
        or None when it is not a plain attribute chain on an imported name."""
        parts: list[str] = []
        while isinstance(expr, ast.Attribute):
            parts.append(expr.attr)
            expr = expr.value
        if not isinstance(expr, ast.Name):
            return None
        base = self._aliases.get(expr.id)
        if base is None:
            if expr.id not in _BUILTINS or expr.id in self._defined:
                return None
            base = f"builtins.{expr.id}"
        return ".".join([base, *reversed(parts)])


def dotted(expr: ast.expr) -> str:
    """A callee as a title shows it: ``client.chat.completions.create``, ``open(...).read``."""
    if isinstance(expr, ast.Name):
        text = expr.id
    elif isinstance(expr, ast.Attribute):
        text = f"{dotted(expr.value)}.{expr.attr}"
    elif isinstance(expr, ast.Call):
        text = f"{dotted(expr.func)}({'...' if expr.args or expr.keywords else ''})"
    else:
        text = ast.unparse(expr)
    return text if len(text) <= 60 else "..." + text[-57:]
