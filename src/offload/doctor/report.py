"""A scan's result and its two renderings: text for people, JSON for tools."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

import orjson

from offload.doctor.findings import Finding


@dataclass(frozen=True, slots=True)
class Report:
    """The findings of one scan, sorted by path and line, and how many files it read."""

    findings: list[Finding]
    files: int

    def render(self, fmt: str = "text") -> str:
        return self.json() if fmt == "json" else self.text()

    def json(self) -> str:
        """A JSON list of ``{path, line, col, code, title, fix, severity}`` objects."""
        return orjson.dumps(
            [f.as_dict() for f in self.findings], option=orjson.OPT_INDENT_2
        ).decode()

    def text(self) -> str:
        """``path:line: CODE title`` with the fix indented under it, grouped by file."""
        blocks: list[str] = []
        for _, group in groupby(self.findings, key=lambda f: f.path):
            lines: list[str] = []
            for f in group:
                lines += [f"{f.path}:{f.line}: {f.code} {f.title}", f"    fix: {f.fix}"]
            blocks.append("\n".join(lines))
        return "\n\n".join([*blocks, self.summary()])

    def summary(self) -> str:
        files = f"{self.files} file" + ("" if self.files == 1 else "s")
        if not self.findings:
            return f"offload doctor: no findings in {files}"
        errors = sum(f.severity == "error" for f in self.findings)
        warnings = len(self.findings) - errors
        affected = len({f.path for f in self.findings})
        counts = f"{errors} error" + ("" if errors == 1 else "s")
        counts += f", {warnings} warning" + ("" if warnings == 1 else "s")
        found = f"{len(self.findings)} finding" + ("" if len(self.findings) == 1 else "s")
        return f"offload doctor: {found} ({counts}) in {affected} of {files}"
