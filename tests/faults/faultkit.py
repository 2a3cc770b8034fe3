"""Helpers for the real-process fault tests: worker processes, their logs, and cleanup.

A :class:`Faults` runs on one backend kind: ``sqlite`` (a fresh file) or ``redis`` (a fresh
namespace on the shared test server, or any ``redis://`` URL a test passes, such as a private
server it kills). Every worker is started in a session of its own, so teardown can SIGKILL its
whole process group (a supervisor's children included) by pid, whatever state the test left it
in (stopped, draining, hung). Pids of grandchildren the tests learn about are killed too. The
``faults`` fixture (conftest.py) hands a test one :class:`Faults` and cleans it up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis

import offload
from offload import State, Transition
from offload.backends.base import Backend
from rediskit import TEST_REDIS

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


def pid_of(worker_id: str | None) -> int | None:
    """The pid in a worker id (``<name>-<pid>-<random>``)."""
    return None if worker_id is None else int(worker_id.rsplit("-", 2)[1])


@dataclass(frozen=True)
class Run:
    """One run of a job, as the ``tally`` task wrote it into the ledger."""

    job: str
    attempt: int
    pid: int
    at: float


def read_ledger(folder: Path) -> list[Run]:
    """Every run recorded under ``folder`` (one file per worker process), in no set order."""
    runs = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.endswith("}"):  # a process killed mid-write leaves at most a partial line
                d = json.loads(line)
                runs.append(Run(d["job"], d["attempt"], d["pid"], d["at"]))
    return runs


def runs_per_job(runs: Sequence[Run]) -> Counter[str]:
    return Counter(r.job for r in runs)


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


#: The backend kinds every fault test runs on.
KINDS = ("sqlite", "redis")
#: Namespaces of these tests on the shared test Redis start with this, not with
#: ``rediskit.TEST_PREFIX``: every pytest session deletes all namespaces under that prefix when
#: it ends, those of sessions still running included, and a fault test must keep its jobs.
FAULTS_PREFIX = "offload-faults-"


def fresh_redis_url() -> str:
    """A fresh namespace on the shared test Redis; :meth:`Faults.cleanup` deletes it."""
    return f"{TEST_REDIS}?prefix={FAULTS_PREFIX}{uuid.uuid4().hex[:12]}"


def drop_namespace(prefix: str, server: str = TEST_REDIS) -> None:
    """Delete every key of the namespace ``prefix`` on ``server``."""
    client = redis.Redis.from_url(server)
    try:
        keys = list(client.scan_iter(match="{" + prefix + "}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.unlink(*keys[start : start + 1000])
    finally:
        client.close()


class Faults:
    """What a fault test needs: a fresh store of jobs, a client App, and worker processes.

    ``kind`` is ``"sqlite"`` (a file in ``tmp_path``) or ``"redis"`` (``url``, by default a
    fresh namespace on the shared test server, deleted at cleanup).
    """

    def __init__(self, tmp_path: Path, kind: str = "sqlite", url: str | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown backend kind {kind!r}; use one of {KINDS}")
        self.tmp = tmp_path
        self.kind = kind
        self.own_namespace: str | None = None
        if url is None and kind == "redis":
            url = fresh_redis_url()
            self.own_namespace = url.rpartition("prefix=")[2]
        self.url = url or f"sqlite:///{tmp_path / 'jobs.db'}"
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        self.ledger = tmp_path / "ledger"
        self.ledger.mkdir()
        self.workers: list[WorkerProcess] = []
        #: Other logs to show when a test fails (a private redis-server's, say).
        self.extra_logs: list[Path] = []
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
        argv = [sys.executable, "-m", "offload", "worker", APP, "--name", name, *args]
        worker = self.spawn(name, argv, env=env)
        if ready:
            worker.wait_log(" serving ")
        return worker

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> WorkerProcess:
        """Start any process of the test (a worker, a submitter) the way workers are started:
        in ``HERE``, in its own session, logging to ``worker-NAME.log``, killed at teardown."""
        log = self.tmp / f"worker-{name}.log"
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
        return worker

    def track_pid(self, pid: int) -> None:
        """Kill ``pid`` at teardown if it is still there (a grandchild a test spawned)."""
        self.stray_pids.append(pid)

    # -- jobs and evidence ---------------------------------------------------------------------
    def submit(self, task: str, *args: Any) -> offload.Job:
        """Submit a job by task name from the test process (durably stored on return)."""
        return self.app.run_sync(self.app.asubmit_name(task, list(args)))

    def submit_many(self, task: str, arg_lists: Sequence[list[Any]]) -> list[str]:
        """Submit one job per argument list, in batches (each batch stored all or none)."""
        app, spec = self.app, self.app.registry.get(task)
        ids: list[str] = []
        for start in range(0, len(arg_lists), 250):
            batch = [app.prepare(spec, args, {}, offload.SubmitOptions())
                     for args in arg_lists[start : start + 250]]  # fmt: skip
            ids += [job.id for job in app.run_sync(app.asubmit_many(batch))]
        return ids

    def call(self, use: Callable[[Backend], Awaitable[T]]) -> T:
        """Run ``use(backend)`` on the test's own client connection."""

        async def run() -> T:
            return await use(await self.app.backend())

        return self.app.run_sync(run())

    def counts(self) -> Counter[State]:
        """How many jobs are in each state, over all queues."""
        total: Counter[State] = Counter()
        for queue in self.call(lambda b: b.stats()):
            total.update(queue.counts)
        return total

    def wait_all_ended(self, expected: int, timeout: float) -> Counter[State]:
        """Wait until at least ``expected`` jobs exist and none is pending or running."""

        def ended() -> Counter[State] | None:
            counts = self.counts()
            pending = sum(counts[s] for s in (State.SCHEDULED, State.QUEUED, State.RUNNING))
            return counts if pending == 0 and counts.total() >= expected else None

        return wait_until(ended, timeout, f"{expected} jobs to end", interval=0.2)

    def histories(self, ids: Sequence[str]) -> dict[str, list[Transition]]:
        async def read(backend: Backend) -> dict[str, list[Transition]]:
            return {job_id: await backend.history(job_id) for job_id in ids}

        return self.call(read)

    def records(self, ids: Sequence[str]) -> dict[str, offload.JobRecord]:
        async def read(backend: Backend) -> dict[str, offload.JobRecord]:
            found = {job_id: await backend.get(job_id) for job_id in ids}
            missing = [job_id for job_id, rec in found.items() if rec is None]
            assert not missing, f"{len(missing)} jobs are not stored, e.g. {missing[:3]}"
            return {job_id: rec for job_id, rec in found.items() if rec is not None}

        return self.call(read)

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
        for path in self.extra_logs:
            parts.append(f"----- {path} -----")
            parts.append(path.read_text(errors="replace") if path.exists() else "(missing)")
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
        if self.own_namespace is not None:
            drop_namespace(self.own_namespace)


def _is_our_sleep(pid: int) -> bool:
    """Guard against pid reuse: only kill a process that still runs the ``sleep`` we started."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"sleep")
    except OSError:
        return False
