"""Start, watch and kill the processes of a fault test: workers, APIs, submitters.

Every process is started in a session of its own, so teardown can SIGKILL its whole process
group (a supervisor's children included) by pid, whatever state the test left it in (stopped,
draining, hung). Pids of grandchildren the tests learn about are killed too. Signals sent
through :meth:`WorkerProcess.signal` are recorded as faults (SIGKILL: a kill; SIGSTOP until
SIGCONT: a stop) for the history checker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
from history import Fault

from upkit import free_port

#: tests/faults: where the processes run and find ``faultapp``.
HERE = Path(__file__).resolve().parent.parent

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


def pid_of(worker_id: str | None) -> int | None:
    """The pid in a worker id (``<name>-<pid>-<random>``)."""
    return None if worker_id is None else int(worker_id.rsplit("-", 2)[1])


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


def session_pids(sid: int) -> set[int]:
    """The processes of session ``sid`` (a test's process and everything it started)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # it just ended
        if int(fields[3]) == sid:  # after the name: state, ppid, pgrp, session
            found.add(int(stat.parent.name))
    return found


class WorkerProcess:
    """One process started by a test: an ``offload worker`` (or supervisor), a submitter, an API.

    ``on_fault`` records the faults its signals inject (see :meth:`signal`).
    """

    def __init__(
        self,
        name: str,
        proc: subprocess.Popen[bytes],
        log: Path,
        on_fault: Callable[[Fault], None] | None = None,
    ) -> None:
        self.name = name
        self.proc = proc
        self.log = log
        self.started = time.monotonic()
        self.spawned_at = time.time()
        self.ready_at: float | None = None  # when it was seen serving (workers)
        self.died_at: float | None = None
        self.reaps = False  # a worker: it sweeps expired leases
        self._on_fault = on_fault
        self._stopped: Fault | None = None

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
        if fragment == " serving " and self.ready_at is None:
            self.ready_at = time.time()

    def _record(self, sig: signal.Signals, at: float) -> None:
        if sig is signal.SIGKILL:
            self.died_at = at
            self._note(Fault("kill", frozenset({self.pid}), at))
        elif sig is signal.SIGSTOP and self._stopped is None:
            self._stopped = Fault("stop", frozenset({self.pid}), at)
            self._note(self._stopped)
        elif sig is signal.SIGCONT and self._stopped is not None:
            self._stopped.end = at
            self._stopped = None

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig``; SIGKILL, SIGSTOP and SIGCONT are recorded as faults."""
        at = time.time()
        self.proc.send_signal(sig)
        self._record(sig, at)

    def _note(self, fault: Fault) -> None:
        if self._on_fault is not None:
            self._on_fault(fault)

    def kill_group(self) -> None:
        """SIGKILL its whole session (a supervisor with its children), recorded as a kill of
        every process in it."""
        members = session_pids(self.pid)
        at = time.time()
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.died_at = at
        self._note(Fault("kill", frozenset({self.pid, *members}), at))

    def wait_exit(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker {self.name} still running {timeout:g}s later") from None
        if self.died_at is None:
            self.died_at = time.time()
        return code

    def holds_write_lock(self) -> bool:
        """Whether this process holds an exclusive POSIX lock (SQLite's write lock) now."""
        for line in Path("/proc/locks").read_text().splitlines():
            parts = line.split()
            # "1: POSIX  ADVISORY  WRITE <pid> <dev:inode> <start> <end>" (waiters have "->")
            if parts[1:5] == ["POSIX", "ADVISORY", "WRITE", str(self.pid)]:
                return True
        return False


@dataclass(frozen=True)
class Api:
    """An ``offload serve`` process and its base URL."""

    process: WorkerProcess
    base: str


class Processes:
    """The processes part of :class:`~faultkit.orchestration.Faults`: start, log, kill."""

    tmp: Path
    url: str
    workers: list[WorkerProcess]
    extra_logs: list[Path]
    stray_pids: list[int]
    faults: list[Fault]
    marks: Path

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
        argv = [sys.executable, "-m", "offload", "worker", APP, "--name", name, *args]
        worker = self.spawn(name, argv, env=env)
        worker.reaps = True
        if ready:
            worker.wait_log(" serving ")
        return worker

    def serve(
        self, name: str, *, backend: str | None = None, env: dict[str, str] | None = None
    ) -> Api:
        """Start ``offload serve faultapp:app`` on a free loopback port; wait until it answers
        ``/health/live`` (the backend may be down: that is what ready is for)."""
        port = free_port()
        extra = dict(env or {})
        if backend is not None:
            extra["OFFLOAD_BACKEND"] = backend
        argv = [sys.executable, "-m", "offload", "serve", APP, "--port", str(port)]
        api = Api(self.spawn(name, argv, env=extra), f"http://127.0.0.1:{port}")

        def live() -> bool:
            code = api.process.proc.poll()
            assert code is None, f"API {name} exited with {code}:\n{api.process.text()}"
            try:
                return httpx.get(f"{api.base}/health/live", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(live, 30, f"API {name} to answer", interval=0.1)
        return api

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> WorkerProcess:
        """Start any process of the test (a worker, a submitter) the way workers are started:
        in ``HERE``, in its own session, logging to ``worker-NAME.log``, killed at teardown."""
        log = self.tmp / f"worker-{name}.log"
        n = 1
        while log.exists():  # a process restarted under its old name keeps the old log
            n += 1
            log = self.tmp / f"worker-{name}.{n}.log"
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
        worker = WorkerProcess(name, proc, log, on_fault=self.faults.append)
        self.workers.append(worker)
        return worker

    def track_pid(self, pid: int) -> None:
        """Kill ``pid`` at teardown if it is still there (a grandchild a test spawned)."""
        self.stray_pids.append(pid)

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

    def logs(self) -> str:
        parts = []
        for w in self.workers:
            parts.append(f"----- worker {w.name} (pid {w.pid}, exit {w.proc.poll()}) -----")
            parts.append(w.text())
        for path in self.extra_logs:
            parts.append(f"----- {path} -----")
            parts.append(path.read_text(errors="replace") if path.exists() else "(missing)")
        return "\n".join(parts)

    def kill_all(self) -> None:
        """SIGKILL every process of the test (not recorded as a fault: the test is over): each
        one's session, which holds a supervisor's children and the process groups of its
        process-executor children and ``run_process`` commands too."""
        for w in self.workers:
            members = session_pids(w.pid)  # orphans keep the session of the process that died
            try:
                os.killpg(w.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            for pid in members - {w.pid}:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for w in self.workers:
            try:
                w.proc.wait(10)
            except subprocess.TimeoutExpired:  # pragma: no cover - a process that ignores KILL
                pass

    def kill_strays(self) -> None:
        """SIGKILL the grandchildren :meth:`track_pid` was told about, if still ours."""
        for pid in self.stray_pids:
            if not pid_gone(pid) and _is_our_sleep(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _is_our_sleep(pid: int) -> bool:
    """Guard against pid reuse: only kill a process that still runs the ``sleep`` we started."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"sleep")
    except OSError:
        return False
