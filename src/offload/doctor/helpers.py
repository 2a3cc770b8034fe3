"""Blocking calls behind the project's own helpers (OFF101-OFF107, one step or more away).

An ``async def`` that calls a plain ``def`` of the project (in the same module, or in another
scanned module imported by an absolute or a relative import) whose body blocks, directly or
through further helpers (up to :data:`MAX_DEPTH` calls deep), is reported at its call, with
the chain in the title::

    blocking HTTP call: load_rows() -> requests.get() (app/helpers.py:12) in async def report

A helper's line marked ``# offload: ignore`` does not count. Async helpers are checked where
they are defined; calls handed to threads (nested ``def``, ``lambda``) are not followed.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from offload.doctor.findings import RULES, Hit
from offload.doctor.kinds import Bindings
from offload.doctor.names import dotted
from offload.doctor.rules import (
    applies,
    blocking_call,
    describe,
    direct_calls,
    is_route_handler,
    is_startup,
)
from offload.doctor.sources import Source

#: helper calls followed from an async def before giving up
MAX_DEPTH = 3

_Target = tuple[Path, str]  # a module's file and the name of one of its top-level functions


@dataclass(frozen=True, slots=True)
class _Blocked:
    code: str
    chain: str  # "requests.get() (helpers.py:12)", or "more() (helpers.py:9) -> ..."


class Helpers:
    """The top-level functions of every scanned module, and which of them block."""

    def __init__(self, sources: list[Source]) -> None:
        self._sources = {s.path: s for s in sources if s.tree is not None and s.names}
        self._scopes: dict[Path, Bindings] = {}
        self._memo: dict[_Target, _Blocked | None] = {}
        self._imports: dict[Path, dict[str, tuple[Path, str]]] = {}
        self._modules: dict[tuple[tuple[str, ...], Path], Path | None] = {}

    def hits(self, source: Source) -> list[Hit]:
        """Calls of ``source``'s async defs into blocking helpers of the project."""
        if source.path not in self._sources or source.tree is None:
            return []
        found: list[Hit] = []
        for func in ast.walk(source.tree):
            if isinstance(func, ast.AsyncFunctionDef):
                found += self._function_hits(source, func)
        return found

    def _function_hits(self, source: Source, func: ast.AsyncFunctionDef) -> list[Hit]:
        hits: list[Hit] = []
        startup = is_startup(func)
        for call in direct_calls(func.body):
            target = self._resolve(source, call.func)
            blocked = self._blocks(target, 1) if target else None
            route = is_route_handler(func)
            if blocked and applies(blocked.code, is_async=True, is_route=route, startup=startup):
                what = RULES[blocked.code].what
                title = f"{what}: {dotted(call.func)}() -> {blocked.chain} in {describe(func)}"
                hits.append(Hit(call.lineno, call.col_offset + 1, blocked.code, title))
        return hits

    # -- what blocks ---------------------------------------------------------------------------
    def _blocks(self, target: _Target, depth: int) -> _Blocked | None:
        if target not in self._memo:
            self._memo[target] = None  # a recursive helper: no answer while it is being read
            self._memo[target] = self._read(target, depth)
        return self._memo[target]

    def _read(self, target: _Target, depth: int) -> _Blocked | None:
        source = self._sources[target[0]]
        func = _top_level_def(source, target[1])
        if func is None:
            return None
        scope = self._scope(source).for_function(func)
        calls = direct_calls(func.body)
        for call in calls:
            found = blocking_call(call, scope)
            if found is not None and not source.suppressed(call.lineno, found[0]):
                code, shown = found
                return _Blocked(code, f"{shown} ({source.shown}:{call.lineno})")
        if depth >= MAX_DEPTH:
            return None
        for call in calls:
            inner = self._resolve(source, call.func)
            blocked = self._blocks(inner, depth + 1) if inner else None
            if blocked is not None:
                step = f"{dotted(call.func)}() ({source.shown}:{call.lineno})"
                return _Blocked(blocked.code, f"{step} -> {blocked.chain}")
        return None

    def _scope(self, source: Source) -> Bindings:
        if source.path not in self._scopes:
            assert source.tree is not None
            assert source.names is not None
            self._scopes[source.path] = Bindings.for_module(source.tree, source.names)
        return self._scopes[source.path]

    # -- what a callee is ----------------------------------------------------------------------
    def _resolve(self, source: Source, callee: ast.expr) -> _Target | None:
        """The project function ``callee`` names in ``source``, if it is one."""
        names = source.names
        if isinstance(callee, ast.Name) and _defined_here(source, callee):
            return source.path, callee.id
        imported = self._relative(source).get(_root(callee) or "")
        if imported is not None:
            return self._in_module(imported, _attributes(callee))
        qual = names.qualify(callee) if names is not None else None
        if qual is None or "." not in qual:
            return None
        module, _, name = qual.rpartition(".")
        path = self._find_module(module.split("."), source.path.parent)
        return (path, name) if path is not None else None

    def _in_module(self, imported: tuple[Path, str], attrs: list[str]) -> _Target | None:
        """``from .m import f`` then ``f()``, or ``from . import m`` then ``m.f()``."""
        stem, name = imported  # the module's path without its suffix
        if not attrs:
            module = self._file(stem)
            return (module, name) if module is not None else None
        if len(attrs) == 1:  # ``name`` is a module of the package at ``stem``
            package = stem.parent if stem.name == "__init__" else stem
            module = self._file(package / name)
            return (module, attrs[0]) if module is not None else None
        return None

    def _relative(self, source: Source) -> dict[str, tuple[Path, str]]:
        if source.path not in self._imports:
            self._imports[source.path] = _relative_imports(source)
        return self._imports[source.path]

    def _find_module(self, parts: list[str], home: Path) -> Path | None:
        """The scanned file of an absolute module name, the one nearest ``home`` first."""
        key = (tuple(parts), home)
        if key not in self._modules:
            self._modules[key] = self._search(parts, home)
        return self._modules[key]

    def _search(self, parts: list[str], home: Path) -> Path | None:
        wanted = [(*parts[:-1], parts[-1] + ".py"), (*parts, "__init__.py")]
        found = [p for p in self._sources if any(p.parts[-len(w) :] == w for w in wanted)]
        found.sort(key=lambda p: (not p.is_relative_to(home), len(p.parts)))
        return found[0] if found else None

    def _file(self, stem: Path) -> Path | None:
        for path in (stem.with_suffix(".py"), stem / "__init__.py"):
            if path in self._sources:
                return path
        return None


def _defined_here(source: Source, callee: ast.Name) -> bool:
    """A function of this module's top level, not a name imported over it."""
    imported = source.names is None or source.names.qualify(callee) is not None
    return not imported and _top_level_def(source, callee.id) is not None


def _top_level_def(source: Source, name: str) -> ast.FunctionDef | None:
    if source.tree is None:
        return None
    for stmt in source.tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == name:
            return stmt
    return None


def _root(callee: ast.expr) -> str | None:
    while isinstance(callee, ast.Attribute):
        callee = callee.value
    return callee.id if isinstance(callee, ast.Name) else None


def _attributes(callee: ast.expr) -> list[str]:
    names: list[str] = []
    while isinstance(callee, ast.Attribute):
        names.append(callee.attr)
        callee = callee.value
    return names[::-1]


def _relative_imports(source: Source) -> dict[str, tuple[Path, str]]:
    """``local name -> (module path without suffix, imported name)`` of the relative imports
    of ``source``: ``from .helpers import load`` gives ``load -> (<dir>/helpers, "load")``,
    ``from . import helpers`` gives ``helpers -> (<dir>/__init__, "helpers")``."""
    found: dict[str, tuple[Path, str]] = {}
    if source.tree is None:
        return found
    for node in ast.walk(source.tree):
        if not (isinstance(node, ast.ImportFrom) and node.level):
            continue
        base = source.path.parent
        for _ in range(node.level - 1):
            base = base.parent
        stem = base.joinpath(*node.module.split(".")) if node.module else base / "__init__"
        for alias in node.names:
            if alias.name != "*":
                found[alias.asname or alias.name] = (stem, alias.name)
    return found
