"""The worker's side of the warden: a small process that outlives the worker just long enough
to SIGKILL the process groups of its ``run_process`` commands.

The parent-death signal (``worker.lifeline``) reaches only a command's leader; a command that
started helpers of its own (``latexmk`` running ``xelatex``, ``sh -c "a | b"``) would leave them
running after ``kill -9`` of the worker. The warden holds the list of live groups and kills them
when its stdin (written only by the worker) reaches end of input. It works wherever POSIX pipes
and process groups do, macOS included. It is one process per worker, started with the worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

from offload.worker.sweep import GroupRecord

log = logging.getLogger("offload.worker")

_MAIN = Path(__file__).with_name("_warden_main.py")
_MAX_RESTARTS = 5  # a warden that keeps dying is not started again


class Warden:
    """Tells the warden process which command groups are alive (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._record: GroupRecord | None = None
        self._groups: set[int] = set()
        self._restarts = 0

    @property
    def pid(self) -> int | None:
        """The warden process's id (None before start and after close)."""
        proc = self._proc
        return None if proc is None else proc.pid

    def start(self, record: GroupRecord | None = None) -> None:
        """Start the warden process; ``record`` also keeps the groups in a file, for the
        start-up sweep of the next worker if the warden is killed too (``worker.sweep``).

        A warden that dies while the worker runs (the OOM killer, a stray ``kill -9``) is
        replaced at once and told the live groups, up to ``_MAX_RESTARTS`` times.
        """
        self._record = record
        with self._lock:
            self._launch()

    def watch(self, pgid: int) -> None:
        """A command group started: kill it if the worker dies before it ends."""
        with self._lock:
            self._groups.add(pgid)
            if self._record is not None:
                self._record.add(pgid)
            self._send(b"+%d\n" % pgid)

    def announce_fd(self) -> int | None:
        """A duplicate of the warden's input (the caller closes it), for a command to announce
        its own group between fork and exec (``lifeline.command_preexec``): the warden then
        knows it even if the worker dies before :meth:`watch` ran."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.stdin is None:
                return None
            try:
                return os.dup(proc.stdin.fileno())
            except (OSError, ValueError):
                return None

    def unwatch(self, pgid: int) -> None:
        """The group's leader was reaped: forget it."""
        with self._lock:
            self._groups.discard(pgid)
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

    def _launch(self) -> None:
        """Start a warden process and tell it the live groups (the caller holds the lock)."""
        # Its own session: signals for the worker's terminal or process group do not reach it.
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(_MAIN)],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )
        self._proc = proc
        threading.Thread(
            target=self._guard, args=(proc,), name="offload-warden", daemon=True
        ).start()
        for pgid in self._groups:  # line by line: each write stays atomic (see command_preexec)
            self._send(b"+%d\n" % pgid)

    def _guard(self, proc: subprocess.Popen[bytes]) -> None:
        """Replace the warden process if it dies while it is still needed."""
        proc.wait()
        with self._lock:
            if self._proc is not proc:
                return  # closed by the worker
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            if self._restarts >= _MAX_RESTARTS:
                log.warning(
                    "the warden process died (exit %s) %d times; not watching command "
                    "groups any more",
                    proc.returncode,
                    self._restarts + 1,
                )
                self._proc = None
                return
            self._restarts += 1
            log.warning("the warden process died (exit %s); starting another", proc.returncode)
            self._launch()

    def _send(self, line: bytes) -> None:
        """Tell the warden process (the caller holds the lock)."""
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        try:
            proc.stdin.write(line)
            proc.stdin.flush()
        except OSError:
            pass  # it died: _guard starts another and tells it every live group, this one too
