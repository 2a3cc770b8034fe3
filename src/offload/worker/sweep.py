"""Command groups on record: what a dead worker left running, killed by the next one (Linux).

The warden (``worker.warden``) kills a dead worker's command groups, unless it was killed too
(a ``kill -9`` of both). For that case each worker also keeps a record file of its live groups,
``<tmp>/offload-<uid>/groups/<pid>.<start time>``: one line ``+<pgid> <start time>`` per
command started and ``-<pgid>`` per command reaped, rewritten with only the live groups every
couple of thousand lines. A worker deletes its file when it stops cleanly. A worker that starts
sweeps the folder first: the file of a worker that is no longer running (no process with that
pid and start time) is replayed, and each group still listed is SIGKILLed, unless a process
with the group's id runs with another start time (the id was reused: that is someone else's
process). Start times come from ``/proc``, so this is Linux only; elsewhere nothing is
recorded. The folder must be ours and writable by nobody else (not a symlink either): in a
shared temporary folder, another user could otherwise plant a record naming any of our
processes, and the next worker would kill it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import stat
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("offload.worker")

__all__ = ["GroupRecord", "record_dir", "start_time", "sweep"]

_COMPACT_AFTER = 2000  # lines a record file may grow by before it is rewritten


def record_dir() -> Path | None:
    """This user's folder of group records, or None where start times cannot be read."""
    if not sys.platform.startswith("linux"):
        return None
    return Path(tempfile.gettempdir()) / f"offload-{os.getuid()}" / "groups"


def start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None if it is not running (no
    such process, or a zombie: a dead worker its parent has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the name may hold spaces and parentheses
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # field 22 of proc(5); the split starts at field 3


class GroupRecord:
    """One worker's record file (not thread-safe: the warden's lock guards it)."""

    def __init__(self, folder: Path) -> None:
        folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
        _check_private(folder)
        me = os.getpid()
        self.path = folder / f"{me}.{start_time(me)}"
        self._file = open(self.path, "a", buffering=1)  # noqa: SIM115 - kept open until close
        self._live: dict[int, int | None] = {}
        self._lines = 0

    def add(self, pgid: int) -> None:
        self._live[pgid] = started = start_time(pgid)
        self._write(f"+{pgid} {started}\n")

    def remove(self, pgid: int) -> None:
        self._live.pop(pgid, None)
        self._write(f"-{pgid}\n")

    def _write(self, line: str) -> None:
        self._file.write(line)
        self._lines += 1
        if self._lines >= _COMPACT_AFTER + 2 * len(self._live):
            self._compact()

    def _compact(self) -> None:
        """Rewrite the file with only the live groups (each command adds two lines, and a worker
        may run for weeks); the new file replaces the old at once, so a sweep reads either."""
        lines = [f"+{pgid} {started}\n" for pgid, started in self._live.items()]
        fresh = self.path.with_name(f"{self.path.name}-new")  # not a record name: never swept
        fresh.write_text("".join(lines))
        os.replace(fresh, self.path)
        self._file.close()
        self._file = open(self.path, "a", buffering=1)  # noqa: SIM115 - kept open until close
        self._lines = len(lines)

    def close(self) -> None:
        """A clean stop: the worker killed or reaped its commands itself."""
        self._file.close()
        self.path.unlink(missing_ok=True)


def sweep(folder: Path) -> int:
    """Kill the groups recorded by workers that are gone; return how many groups were killed.

    :raises PermissionError: ``folder`` (or its parent) is not private to this user.
    """
    if not os.path.lexists(folder):
        return 0
    _check_private(folder)
    killed = 0
    for path in sorted(folder.glob("*.*")):
        pid, _, started = path.name.partition(".")
        if not (pid.isdigit() and started.isdigit()):
            continue
        if start_time(int(pid)) == int(started):
            continue  # that worker is running
        for pgid, leader_started in _replay(path).items():
            now = start_time(pgid)
            if now is not None and now != leader_started:
                continue  # the id was reused by an unrelated process
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
                killed += 1
        path.unlink(missing_ok=True)
    if killed:
        log.warning("killed %d command group(s) left by a worker that died", killed)
    return killed


def _check_private(folder: Path) -> None:
    """Raise PermissionError unless ``folder`` and its parent are real folders of ours that only
    we can write to (whoever can write to the parent can swap the folder)."""
    for path in (folder.parent, folder):
        info = path.lstat()
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022:
            continue
        raise PermissionError(
            f"{path} is not a folder of this user's that only it can write to; "
            f"the records in {folder} are not trusted"
        )


def _replay(path: Path) -> dict[int, int | None]:
    """The groups a record file lists as live: pgid -> its leader's start time."""
    live: dict[int, int | None] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            rest = line[1:].split()
            if not rest or not rest[0].isdigit():
                continue  # a line cut short when the worker died
            if line.startswith("+"):
                live[int(rest[0])] = int(rest[1]) if len(rest) > 1 and rest[1].isdigit() else None
            else:
                live.pop(int(rest[0]), None)
    return live
