"""The worker's side of the warden: a small process that outlives the worker just long enough
to SIGKILL the process groups of its ``run_process`` commands.

The parent-death signal (``worker.lifeline``) reaches only a command's leader; a command that
started helpers of its own (``latexmk`` running ``xelatex``, ``sh -c "a | b"``) would leave them
running after ``kill -9`` of the worker. The warden holds the list of live groups and kills them
when its stdin (written only by the worker) reaches end of input. It works wherever POSIX pipes
and process groups do, macOS included. It is one process per worker, started with the worker.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

from offload.worker.sweep import GroupRecord

log = logging.getLogger("offload.worker")

_MAIN = Path(__file__).with_name("_warden_main.py")


class Warden:
    """Tells the warden process which command groups are alive (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._record: GroupRecord | None = None

    def start(self, record: GroupRecord | None = None) -> None:
        """Start the warden process; ``record`` also keeps the groups in a file, for the
        start-up sweep of the next worker if the warden is killed too (``worker.sweep``)."""
        self._record = record
        # Its own session: signals for the worker's terminal or process group do not reach it.
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(_MAIN)],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )

    def watch(self, pgid: int) -> None:
        """A command group started: kill it if the worker dies before it ends."""
        with self._lock:
            if self._record is not None:
                self._record.add(pgid)
            self._send(b"+%d\n" % pgid)

    def unwatch(self, pgid: int) -> None:
        """The group's leader was reaped: forget it."""
        with self._lock:
            if self._record is not None:
                self._record.remove(pgid)
            self._send(b"-%d\n" % pgid)

    def close(self) -> None:
        """End the warden (it kills any group still listed, as if the worker had died)."""
        with self._lock:
            proc, self._proc = self._proc, None
            record, self._record = self._record, None
        if record is not None:
            record.close()
        if proc is None or proc.stdin is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        proc.wait()

    def _send(self, line: bytes) -> None:
        """Tell the warden process (the caller holds the lock)."""
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        try:
            proc.stdin.write(line)
            proc.stdin.flush()
        except OSError as exc:  # it died: commands still die with their leader (Linux)
            log.warning("the warden process is gone (%s); not watching command groups", exc)
            self._proc = None
