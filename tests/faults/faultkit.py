"""Helpers for the real-process fault tests: worker processes, their logs, and cleanup.

Every worker is started in a session of its own, so teardown can SIGKILL its whole process group
(a supervisor's children included) by pid, whatever state the test left it in (stopped,
draining, hung). Pids of grandchildren the tests learn about are killed too. The ``faults``
fixture (conftest.py) hands a test one :class:`Faults` and cleans it up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import offload

HERE = Path(__file__).resolve().parent
APP = "faultapp:app"

#: Short timings so that leases expire and reapers run within a couple of seconds.
TIMINGS = {
    "OFFLOAD_LEASE_SECONDS": "1.5",
    "OFFLOAD_RENEW_INTERVAL": "0.3",
    "OFFLOAD_REAP_INTERVAL": "0.3",
    "OFFLOAD_CANCEL_POLL": "0.1",
    "OFFLOAD_SHUTDOWN_GRACE": "5",
    "OFFLOAD_IDLE_WAIT": "0.2",
}
LEASE = float(TIMINGS["OFFLOAD_LEASE_SECONDS"])
REAP = float(TIMINGS["OFFLOAD_REAP_INTERVAL"])

T = TypeVar("T")


def wait_until(
    check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.02
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def pid_gone(pid: int) -> bool:
    """Whether process ``pid`` has terminated (a zombie nobody reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


class WorkerProcess:
    """One ``offload worker`` process (or supervisor) started by a test."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, fragment: str, timeout: float = 10.0, count: int = 1) -> None:
        """Wait until ``fragment`` appears ``count`` times in the worker's log."""

        def seen() -> bool:
            if self.text().count(fragment) >= count:
                return True
            code = self.proc.poll()
            if code is not None and self.text().count(fragment) < count:
                raise AssertionError(
                    f"worker {self.name} exited with {code} before logging {fragment!r}"
                )
            return False

        wait_until(seen, timeout, f"{fragment!r} in the log of worker {self.name}")

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker {self.name} still running {timeout:g}s later") from None

    def holds_write_lock(self) -> bool:
        """Whether this process holds an exclusive POSIX lock (SQLite's write lock) now."""
        for line in Path("/proc/locks").read_text().splitlines():
            parts = line.split()
            # "1: POSIX  ADVISORY  WRITE <pid> <dev:inode> <start> <end>" (waiters have "->")
            if parts[1:5] == ["POSIX", "ADVISORY", "WRITE", str(self.pid)]:
                return True
        return False


class Faults:
    """What a fault test needs: a fresh SQLite file, a client App, and worker processes."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.db = tmp_path / "jobs.db"
        self.url = f"sqlite:///{self.db}"
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        self.workers: list[WorkerProcess] = []
        self.stray_pids: list[int] = []
        import faultapp

        self.app: offload.App = faultapp.build(self.url)

    # -- processes ---------------------------------------------------------------------------
    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
        env.update(TIMINGS)
        env["OFFLOAD_BACKEND"] = self.url
        env["PYTHONPATH"] = os.pathsep.join(
            [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        env.update(overrides)
        return env

    def start(
        self, name: str, *args: str, env: dict[str, str] | None = None, ready: bool = True
    ) -> WorkerProcess:
        """Start ``offload worker faultapp:app --name NAME ARGS...``; wait until it serves."""
        log = self.tmp / f"worker-{name}.log"
        argv = [sys.executable, "-m", "offload", "worker", APP, "--name", name, *args]
        with log.open("wb") as err:
            proc = subprocess.Popen(
                argv,
                cwd=HERE,
                env=self.env(**(env or {})),
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = WorkerProcess(name, proc, log)
        self.workers.append(worker)
        if ready:
            worker.wait_log(" serving ")
        return worker

    def track_pid(self, pid: int) -> None:
        """Kill ``pid`` at teardown if it is still there (a grandchild a test spawned)."""
        self.stray_pids.append(pid)

    # -- jobs and evidence ---------------------------------------------------------------------
    def submit(self, task: str, *args: Any) -> offload.Job:
        """Submit a job by task name from the test process (durably stored on return)."""
        return self.app.run_sync(self.app.asubmit_name(task, list(args)))

    def marker(self, tag: str, run: int, timeout: float = 10.0) -> dict[str, Any]:
        """The start marker of run ``run`` of job ``tag``, once it exists."""
        path = self.marks / f"{tag}.{run}.json"
        wait_until(path.exists, timeout, f"run {run} of job {tag} to start")
        return json.loads(path.read_text())  # type: ignore[no-any-return]

    def pidfile(self, name: str) -> Path:
        return self.marks / name

    def read_pid(self, path: Path, timeout: float = 10.0) -> int:
        def complete() -> int | None:
            try:
                text = path.read_text()
            except FileNotFoundError:
                return None
            return int(text) if text.endswith("\n") else None

        pid = wait_until(complete, timeout, f"a pid in {path.name}")
        self.track_pid(pid)
        return pid

    def wait_status(
        self, job: offload.Job, status: offload.State | str, timeout: float
    ) -> offload.Job:
        target = offload.State(status)

        def reached() -> bool:
            job.refresh()
            if job.status is not target and job.record.is_terminal:
                raise AssertionError(f"job {job.id} ended {job.status}, expected {target}")
            return job.status is target

        wait_until(reached, timeout, f"job {job.id} to be {target}", interval=0.05)
        return job

    def wait_until_terminal(self, job: offload.Job, timeout: float) -> offload.Job:
        def ended() -> bool:
            job.refresh()
            return job.record.is_terminal

        wait_until(ended, timeout, f"job {job.id} to end", interval=0.05)
        return job

    def logs(self) -> str:
        parts = []
        for w in self.workers:
            parts.append(f"----- worker {w.name} (pid {w.pid}, exit {w.proc.poll()}) -----")
            parts.append(w.text())
        return "\n".join(parts)

    # -- teardown ------------------------------------------------------------------------------
    def cleanup(self) -> None:
        for w in self.workers:
            try:
                os.killpg(w.pid, signal.SIGKILL)  # its session: children of a supervisor too
            except (ProcessLookupError, PermissionError):
                pass
        for w in self.workers:
            try:
                w.proc.wait(10)
            except subprocess.TimeoutExpired:  # pragma: no cover - a process that ignores KILL
                pass
        for pid in self.stray_pids:
            if not pid_gone(pid) and _is_our_sleep(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.app.close()


def _is_our_sleep(pid: int) -> bool:
    """Guard against pid reuse: only kill a process that still runs the ``sleep`` we started."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"sleep")
    except OSError:
        return False
