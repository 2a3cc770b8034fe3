"""Nothing a worker starts outlives it: parent-death signals and lifeline pipes.

A worker can die without running any cleanup (``kill -9``, the OOM killer, a power cut of its
container). What it started must die with it, or a re-run of the job elsewhere overlaps an
orphan that still writes its output. Two mechanisms cover that:

- **Parent-death signal** (Linux ``PR_SET_PDEATHSIG``): the kernel signals a process when the
  thread that started it exits. ``run_process`` commands get SIGKILL; process-pool children get
  SIGTERM, on which they SIGKILL their own commands' groups and exit. Not on macOS or other
  systems, where :func:`parent_death_signal` returns None.
- **Lifeline pipe** (every POSIX system): a pool child holds the read end of a pipe whose only
  write end is in the worker. When the worker dies, the kernel closes that end, the child's
  lifeline thread reads EOF and the child stops its commands and exits.

Either reaches the command's *leader*; its whole process group is stopped by the pool child
(its handler kills groups) or, for commands started by the worker itself, by the worker's
warden (``offload.worker.warden``), which each command tells of its group before it execs
(:func:`command_preexec`), so that helpers it forks die with it even when the worker is killed
before it registered the group.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

__all__ = [
    "arm_parent_death_signal",
    "command_preexec",
    "parent_death_signal",
    "watch_lifeline",
]

_PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` (resolved once, in the parent: a forked child must not load libraries)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    func: Callable[..., int] = libc.prctl
    return func


def parent_death_signal(signum: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the new process receive ``signum`` when its parent dies.

    None where the system has no such signal (anything but Linux): the caller then passes no
    ``preexec_fn`` at all. The returned function runs in the forked child before ``exec``; it
    calls only ``prctl`` and ``getppid``, and exits at once if the parent died during the fork
    (the signal would never come).
    """
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return arm


def command_preexec(announce_fd: int | None) -> Callable[[], None] | None:
    """The ``preexec_fn`` of a ``run_process`` command: SIGKILL when the worker dies (Linux),
    and, when ``announce_fd`` is given (the warden's input), ``+<pid>`` written there by the
    command itself before it execs, so the warden knows its group before it can start helpers
    of its own. A write of one short line to a pipe is atomic, so it never splits a line the
    worker writes. A warden that died meanwhile only costs the announcement (EPIPE, ignored)."""
    arm = parent_death_signal(signal.SIGKILL)
    if announce_fd is None:
        return arm

    def announce_then_arm() -> None:
        old = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        try:
            os.write(announce_fd, b"+%d\n" % os.getpid())
        except OSError:
            pass
        signal.signal(signal.SIGPIPE, old)
        if arm is not None:
            arm()

    return announce_then_arm


def arm_parent_death_signal(signum: int) -> bool:
    """Ask for ``signum`` when this process's parent dies (Linux); True if armed.

    For a process that is already running (a pool child): call it first thing.
    """
    prctl = _prctl()
    return prctl is not None and prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0


def watch_lifeline(lifeline: Connection[Any, Any], on_death: Callable[[], None]) -> None:
    """Call ``on_death`` from a daemon thread once the other end of ``lifeline`` is gone.

    The worker never writes to it: the read returns only when the last write end closes, which
    is when the worker exits, however it exits.
    """

    def wait() -> None:
        try:
            while True:
                lifeline.recv_bytes()
        except (EOFError, OSError):
            on_death()

    threading.Thread(target=wait, name="offload-lifeline", daemon=True).start()
