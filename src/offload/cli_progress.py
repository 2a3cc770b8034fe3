"""What ``offload submit --wait`` shows on stderr while it waits for a job.

On a terminal: one line redrawn in place, a progress bar once the job reports progress (its
status until then), erased when the job ends. Elsewhere (a pipe, a CI log): one plain line per
change of status or progress, never a carriage return, so logs stay readable.
"""

from __future__ import annotations

import sys
from typing import TextIO

from offload.core.job import JobRecord

WIDTH = 30
MESSAGE = 40


def bar(fraction: float, width: int = WIDTH) -> str:
    """``[#########.....................]`` for ``fraction`` in 0..1 (clamped)."""
    done = int(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * done + "." * (width - done) + "]"


def describe(record: JobRecord) -> str:
    """``running 40% step 2 of 5``: the status, and the progress when the job reports any."""
    parts = [record.status.value]
    if record.progress is not None:
        parts.append(f"{record.progress * 100:.0f}%")
    if record.progress_message:
        parts.append(record.progress_message)
    return " ".join(parts)


class ProgressView:
    """Shows a waited-for job's progress on ``stream`` (stderr by default)."""

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._last: str | None = None
        self._drawn = 0

    def update(self, record: JobRecord) -> None:
        """Show ``record`` if anything shown changed since the last update."""
        text = describe(record)
        if text == self._last:
            return
        self._last = text
        if not self.tty:
            self.stream.write(f"{record.id} {text}\n")
        else:
            self._draw(self._line(record))
        self.stream.flush()

    def _line(self, record: JobRecord) -> str:
        message = (record.progress_message or "")[:MESSAGE]
        if record.progress is None:
            return f"{record.id} {record.status.value} {message}".rstrip()
        return f"{bar(record.progress)} {record.progress * 100:3.0f}% {message}".rstrip()

    def _draw(self, line: str) -> None:
        self.stream.write("\r" + line.ljust(self._drawn))
        self._drawn = len(line)

    def close(self) -> None:
        """Erase the line on a terminal (the result is printed after it)."""
        if self.tty and self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self._drawn = 0
