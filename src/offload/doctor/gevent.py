"""OFF301: a gevent app whose entry module does not call ``monkey.patch_all()`` first.

gevent makes blocking sockets cooperative by patching the standard library; a module imported
before the patch keeps references to the unpatched functions (``ssl``, ``socket``, ``threading``
and every library built on them), and then one request blocks the whole worker. This rule reads
the whole project at once:

- a module that calls ``patch_all()`` at top level after other imports: reported at the call;
- a gunicorn gevent worker (``worker_class = "gevent"`` in a Python config, ``-k gevent`` or
  ``--worker-class gevent`` in a Procfile, shell script, Dockerfile or compose file; any worker
  class with gevent in its name, like ``geventwebsocket...GeventWebSocketWorker``) whose app
  module (``module:app``) is scanned and never calls ``patch_all()``: reported in that module;
- otherwise, gevent in use (a worker configured, or a module importing gevent) while no scanned
  module calls ``patch_all()`` at all: reported where gevent is configured or imported.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePath

from offload.doctor.findings import RULES, Hit
from offload.doctor.sources import Source

_WORKERS = frozenset(
    {
        "gevent",
        "gevent_wsgi",
        "gevent_pywsgi",
        "gunicorn.workers.ggevent.GeventWorker",
        "gunicorn.workers.ggevent.GeventPyWSGIWorker",
        "gunicorn.workers.ggevent.GeventWSGIWorker",
    }
)
_COMMAND = re.compile(r"\bgunicorn\b.*?(?:\s-k\s*|--worker-class(?:\s+|=))(?P<worker>[\w.]+)")
_APP = re.compile(r"(?P<module>[A-Za-z_][\w.]*):[A-Za-z_][\w.]*(?:\(.*\))?")
_QUOTES = re.compile(r"[\"',\[\]]")
_HARMLESS = frozenset({"sys", "os"})  # plain `import sys` before the patch changes nothing
_PATCH = "gevent.monkey.patch_all"


@dataclass(frozen=True, slots=True)
class _Facts:
    gevent_import: int | None  # line of the first gevent import
    patch: int | None  # line of the first top-level patch_all() call
    import_before_patch: int | None  # line of another import that runs before it
    first_import: int | None


@dataclass(frozen=True, slots=True)
class _Worker:
    source: Source
    line: int
    app_module: str | None  # "pkg.main" from "pkg.main:app"


def check_gevent(sources: list[Source]) -> list[tuple[Source, Hit]]:
    """The OFF301 hits of a whole scan, each with the file it belongs to."""
    facts = {s: _facts(s.tree, s) for s in sources if s.tree is not None}
    workers = [w for s in sources for w in _workers(s)]
    hits: list[tuple[Source, Hit]] = []
    for source, fact in facts.items():
        if fact.patch is not None and fact.import_before_patch is not None:
            title = f"{_WHAT}: patch_all() runs after the import on line {fact.import_before_patch}"
            hits.append((source, Hit(fact.patch, 1, "OFF301", title)))
    anyone_patches = any(f.patch is not None for f in facts.values())
    for worker in workers:
        where = f"{worker.source.shown}:{worker.line}"
        entry = _find_module(worker, facts)
        if entry is not None and facts[entry].patch is None:
            title = f"{_WHAT}: this module is the app of the gevent worker in {where}"
            hits.append((entry, Hit(facts[entry].first_import or 1, 1, "OFF301", title)))
        elif entry is None and not anyone_patches:
            title = f"{_WHAT}: gevent worker configured and no module calls patch_all()"
            hits.append((worker.source, Hit(worker.line, 1, "OFF301", title)))
    if not workers and not anyone_patches:
        for source, fact in facts.items():
            if fact.gevent_import is not None:
                title = f"{_WHAT}: gevent is imported and no module calls patch_all()"
                hits.append((source, Hit(fact.gevent_import, 1, "OFF301", title)))
    return hits


_WHAT = RULES["OFF301"].what


def _facts(tree: ast.Module, source: Source) -> _Facts:
    gevent_import = patch = before = first = None
    for stmt in _top_level(tree.body):
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            modules = [a.name for a in stmt.names] if isinstance(stmt, ast.Import) else []
            if isinstance(stmt, ast.ImportFrom):
                modules = [stmt.module or ""] if not stmt.level else ["."]
            if modules == ["__future__"]:
                continue
            if all(m == "gevent" or m.startswith("gevent.") for m in modules):
                gevent_import = gevent_import or stmt.lineno
                continue
            first = first or stmt.lineno
            harmless = isinstance(stmt, ast.Import) and set(modules) <= _HARMLESS
            if patch is None and before is None and not harmless:
                before = stmt.lineno
        elif patch is None and _is_patch(stmt, source):
            patch = stmt.lineno
    return _Facts(gevent_import, patch, before if patch is not None else None, first)


def _is_patch(stmt: ast.stmt, source: Source) -> bool:
    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
        return False
    return source.names is not None and source.names.qualify(stmt.value.func) == _PATCH


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Module-level statements in order, including those under if/try/with (guarded imports)."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, ast.If | ast.With):
            yield from _top_level(stmt.body)
            yield from _top_level(stmt.orelse if isinstance(stmt, ast.If) else [])
        elif isinstance(stmt, ast.Try | ast.TryStar):
            yield from _top_level(stmt.body)
            for handler in stmt.handlers:
                yield from _top_level(handler.body)
            yield from _top_level([*stmt.orelse, *stmt.finalbody])


def _workers(source: Source) -> Iterator[_Worker]:
    """Where ``source`` configures a gunicorn gevent worker, and the app module it names."""
    if source.tree is not None:
        values = _string_assignments(source.tree)
        if _is_gevent_worker(values.get("worker_class", ("", 0))[0]):
            app = _APP.fullmatch(values.get("wsgi_app", ("", 0))[0])
            yield _Worker(source, values["worker_class"][1], app["module"] if app else None)
        return
    if source.is_python:
        return
    for number, line in enumerate(source.lines, 1):
        flat = _QUOTES.sub(" ", line)
        match = _COMMAND.search(flat)
        if match is None or not _is_gevent_worker(match["worker"]):
            continue
        apps = [m for t in flat[match.start() :].split() if (m := _APP.fullmatch(t))]
        yield _Worker(source, number, apps[-1]["module"] if apps else None)


def _is_gevent_worker(name: str) -> bool:
    """gunicorn's gevent workers, and any worker class built on gevent
    (``geventwebsocket.gunicorn.workers.GeventWebSocketWorker``...)."""
    return name in _WORKERS or "gevent" in name.lower()


def _string_assignments(tree: ast.Module) -> dict[str, tuple[str, int]]:
    values: dict[str, tuple[str, int]] = {}
    for stmt in tree.body:
        if not (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)):
            continue
        if isinstance(stmt.value.value, str):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    values[target.id] = (stmt.value.value, stmt.lineno)
    return values


def _find_module(worker: _Worker, facts: dict[Source, _Facts]) -> Source | None:
    """The scanned module ``worker.app_module`` names, the one nearest the config first."""
    if worker.app_module is None:
        return None
    parts = worker.app_module.split(".")
    wanted = [(*parts[:-1], parts[-1] + ".py"), (*parts, "__init__.py")]
    home = worker.source.path.parent
    found = [source for source in facts if any(source.path.parts[-len(w) :] == w for w in wanted)]
    found.sort(key=lambda s: (not PurePath(s.path).is_relative_to(home), len(s.path.parts)))
    return found[0] if found else None
