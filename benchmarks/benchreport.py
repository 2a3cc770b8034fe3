"""What the benchmark scripts share: writing their section of docs/benchmarks.md, and the
command line to print in it."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path


def write_section(path: Path, heading: str, text: str) -> None:
    """Write or replace the "## <heading>" section of a "# Benchmarks" document, leaving the
    other sections alone."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if not old.startswith("# Benchmarks"):
        old = "# Benchmarks\n\n" + old
    head, marker, rest = old.partition(f"\n## {heading}\n")
    tail = ""
    if marker:
        _, nxt, after = rest.partition("\n## ")
        tail = f"\n## {after}" if nxt else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n" + tail)


def command_line() -> str:
    """How this benchmark was started, with paths relative to the current folder."""
    exe = Path(sys.executable)
    shown = os.path.relpath(exe) if exe.is_relative_to(Path.cwd()) else str(exe)
    return shlex.join([shown, os.path.relpath(Path(sys.argv[0])), *sys.argv[1:]])
