"""One scan: find the files under the given paths, run every rule, filter and sort."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from offload.doctor.findings import Finding, Hit, enabled_codes, make
from offload.doctor.gevent import check_gevent
from offload.doctor.helpers import Helpers
from offload.doctor.names import Names
from offload.doctor.report import Report
from offload.doctor.rules import check_module
from offload.doctor.sources import Source, load
from offload.errors import ConfigurationError

_SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages", "venv"})
_CONFIG_NAMES = ("Procfile", "Dockerfile", "Containerfile")
_CONFIG_SUFFIXES = frozenset({".sh", ".yml", ".yaml"})
_MAX_CONFIG_BYTES = 1_000_000


def scan(
    paths: Sequence[str | os.PathLike[str]],
    *,
    select: Iterable[str] = (),
    ignore: Iterable[str] = (),
) -> Report:
    """Scan the files and folders ``paths`` (nothing is imported or run).

    ``select`` and ``ignore`` are rule codes or prefixes (``OFF1``). A file that cannot be
    parsed is an OFF001 finding, not an error.

    :raises ConfigurationError: a path that does not exist, or an unknown rule code.
    """
    codes = enabled_codes(select, ignore)
    sources = _load_all(paths)
    findings: list[Finding] = []
    helpers = Helpers(sources)
    for source in sources:
        if source.problem is not None:
            hits = [source.problem]
        elif source.tree is not None and source.names is not None:
            hits = _check(source.tree, source.names) + helpers.hits(source)
        else:
            hits = []
        findings += _keep(source, hits, codes)
    for source, hit in check_gevent(sources):
        findings += _keep(source, [hit], codes)
    findings.sort(key=lambda f: (f.path, f.line, f.col, f.code))
    return Report(findings, files=len(sources))


def _check(tree: ast.Module, names: Names) -> list[Hit]:
    try:
        return check_module(tree, names)
    except RecursionError:  # absurdly deep nesting: say so rather than stop the whole scan
        return [Hit(1, 1, "OFF001", "could not analyse: the code is nested too deeply")]


def _keep(source: Source, hits: list[Hit], codes: frozenset[str]) -> list[Finding]:
    return [
        make(hit.code, source.shown, hit.line, hit.col, hit.title)
        for hit in hits
        if hit.code in codes and not source.suppressed(hit.line, hit.code)
    ]


def _load_all(paths: Sequence[str | os.PathLike[str]]) -> list[Source]:
    if not paths:
        raise ConfigurationError("offload doctor needs at least one PATH")
    seen: dict[Path, Source] = {}
    for given in paths:
        root = Path(given)
        if not root.exists():
            raise ConfigurationError(f"no such file or folder: {os.fspath(given)}")
        for path in _discover(root):
            resolved = path.resolve()
            if resolved not in seen:
                seen[resolved] = load(resolved, _shown(given, root, path))
    return list(seen.values())


def _shown(given: str | os.PathLike[str], root: Path, path: Path) -> str:
    if path == root:
        return os.fspath(given)
    return os.path.normpath(os.path.join(os.fspath(given), path.relative_to(root)))


def _discover(root: Path) -> Iterator[Path]:
    """``root`` itself when it is a file, else the Python modules and server configs under it
    (hidden folders, virtualenvs, ``node_modules`` and ``__pycache__`` left out)."""
    if not root.is_dir():
        yield root
        return
    for folder, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".")
            and d not in _SKIP_DIRS
            and not os.path.exists(os.path.join(folder, d, "pyvenv.cfg"))
        )
        for name in sorted(filenames):
            path = Path(folder, name)
            if _wanted(path):
                yield path


def _wanted(path: Path) -> bool:
    if path.suffix in (".py", ".pyw"):
        return True
    if not (path.name.startswith(_CONFIG_NAMES) or path.suffix in _CONFIG_SUFFIXES):
        return False
    try:
        return path.stat().st_size <= _MAX_CONFIG_BYTES
    except OSError:
        return False
