"""The files a scan reads: Python modules (parsed, never imported) and server configs (text)."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from offload.doctor.findings import Hit
from offload.doctor.names import Names

_IGNORE = re.compile(r"#\s*offload:\s*ignore(?:\[(?P<codes>[A-Za-z0-9_,\s]*)\])?")


@dataclass(eq=False)
class Source:
    """One scanned file: where it is, how to show its path, and its parse (Python only)."""

    path: Path  # resolved
    shown: str  # as printed: relative to the PATH the user gave
    data: bytes
    tree: ast.Module | None = None
    names: Names | None = None
    problem: Hit | None = None  # OFF001 when the file could not be read or parsed
    _ignores: dict[int, frozenset[str] | None] | None = field(default=None, repr=False)

    @property
    def is_python(self) -> bool:
        return self.path.suffix in (".py", ".pyw")

    @cached_property
    def lines(self) -> list[str]:
        return self.data.decode("utf-8", errors="replace").splitlines()

    def suppressed(self, line: int, code: str) -> bool:
        """Whether ``# offload: ignore`` or ``# offload: ignore[CODE, ...]`` ends ``line``."""
        if self._ignores is None:
            self._ignores = dict(self._comments())
        if line not in self._ignores:
            return False
        codes = self._ignores[line]
        return codes is None or code in codes

    def _comments(self) -> list[tuple[int, frozenset[str] | None]]:
        found: list[tuple[int, frozenset[str] | None]] = []
        for line, comment in self._comment_texts():
            match = _IGNORE.search(comment)
            if match is None:
                continue
            listed = match.group("codes")
            if listed is None:
                found.append((line, None))
            else:
                found.append((line, frozenset(c.strip().upper() for c in listed.split(","))))
        return found

    def _comment_texts(self) -> list[tuple[int, str]]:
        if self.is_python and self.problem is None:
            try:
                tokens = tokenize.tokenize(io.BytesIO(self.data).readline)
                return [(t.start[0], t.string) for t in tokens if t.type == tokenize.COMMENT]
            except (tokenize.TokenError, SyntaxError):
                pass
        return [(n, text) for n, text in enumerate(self.lines, 1) if "#" in text]


def load(path: Path, shown: str) -> Source:
    """Read ``path``; parse it when it is Python. Never raises for a bad file: the problem is
    kept as an OFF001 hit."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Source(path, shown, b"", problem=Hit(1, 1, "OFF001", f"could not read: {exc}"))
    source = Source(path, shown, data)
    if source.is_python:
        try:
            source.tree = ast.parse(data, filename=shown)
        except SyntaxError as exc:
            line, col = exc.lineno or 1, exc.offset or 1
            source.problem = Hit(line, col, "OFF001", f"could not parse: {exc.msg}")
        except (ValueError, RecursionError) as exc:
            source.problem = Hit(1, 1, "OFF001", f"could not parse: {exc}")
        else:
            source.names = Names(source.tree)
    return source
