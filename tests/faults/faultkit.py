"""Helpers for the real-process fault tests: worker processes, their logs, and cleanup.

A :class:`Faults` runs on one backend kind: ``sqlite`` (a fresh file), ``redis`` (a fresh
namespace on the shared test server, or any ``redis://`` URL a test passes, such as a private
server it kills) or ``postgres`` (a fresh schema in the test session's database). Every
worker is started in a session of its own, so teardown can SIGKILL its whole process group (a
supervisor's children included) by pid, whatever state the test left it in (stopped,
draining, hung). Pids of grandchildren the tests learn about are killed too. The
``faults`` fixture (conftest.py) hands a test one :class:`Faults`, runs the history checker
(:mod:`history`) on it after the test, and cleans it up.

Signals sent through :meth:`WorkerProcess.signal` are recorded as faults (SIGKILL: a kill;
SIGSTOP until SIGCONT: a stop) for the checker to explain the leases that expired; tests record
other faults (the backend down, the network cut) with :meth:`Faults.note_fault`.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import history
import httpx
import redis
from history import Fault as Fault
from history import Run as Run
from history import Summary as Summary

import offload
from offload import State, Transition
from offload.backends.base import Backend
from offload.core.job import JobFilter, JobRecord
from pgkit import postgres_schema_url
from rediskit import TEST_REDIS
from upkit import free_port

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
#: What the history checker allows on top of lease + reap interval for a lease to be reaped
#: once a fault began (scheduling noise on a loaded two-core machine).
CHECK_SLACK = 2.5

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


def read_ledger(folder: Path) -> list[Run]:
    """Every run recorded under ``folder`` (one file per process), in no set order.

    A run's ``end`` line is matched to its ``start`` line in the same file; a process killed
    mid-write leaves at most a partial last line, which is skipped.
    """
    runs: list[Run] = []
    for path in sorted(folder.glob("*.jsonl")):
        open_runs: dict[tuple[str, int], int] = {}  # (job, attempt) -> index in runs
        for line in path.read_text().splitlines():
            if not line.endswith("}"):
                continue
            d = json.loads(line)
            key = (d["job"], d["attempt"])
            if d.get("ev", "start") == "start":
                open_runs[key] = len(runs)
                runs.append(Run(d["job"], d["attempt"], d["pid"], d["at"], d.get("worker", 0)))
            elif key in open_runs:
                i = open_runs.pop(key)
                r = runs[i]
                runs[i] = Run(r.job, r.attempt, r.pid, r.at, r.worker, d["at"], d["outcome"])
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


#: The backend kinds every fault test runs on.
KINDS = ("sqlite", "redis", "postgres")
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

    ``kind`` is ``"sqlite"`` (a file in ``tmp_path``), ``"redis"`` (``url``, by default a
    fresh namespace on the shared test server, deleted at cleanup) or ``"postgres"`` (a fresh
    schema, dropped with the session's database).
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
        if url is None and kind == "postgres":
            url = postgres_schema_url()  # a fresh schema in the session's own database
        self.url = url or f"sqlite:///{tmp_path / 'jobs.db'}"
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        self.ledger = tmp_path / "ledger"
        self.ledger.mkdir()
        self.workers: list[WorkerProcess] = []
        #: Other logs to show when a test fails (a private redis-server's, say).
        self.extra_logs: list[Path] = []
        self.stray_pids: list[int] = []
        #: Evidence for the history checker: what the test injected, and what it was promised.
        self.faults: list[Fault] = []
        self.acknowledged: set[str] = set()
        self.may_be_pending: set[str] = set()
        self.summary: Summary | None = None
        #: Numbers a test measured, published with its summary (docs/reliability.md).
        self.measured: dict[str, Any] = {}
        #: The history checker's bound for a lost lease: reaped within lease + reap + slack
        #: (a test with other timings says so here).
        self.lease, self.reap = LEASE, REAP
        import faultapp

        self.app: offload.App = faultapp.build(self.url, process=True)

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

    def note_fault(
        self,
        kind: str,
        pids: Iterable[int] | None,
        start: float,
        end: float | None = None,
        reapers_back: float | None = None,
    ) -> Fault:
        """Record a fault the test injected (``pids`` None: every process); returns it, so that
        its ``end`` can be set once it is over."""
        fault = Fault(kind, None if pids is None else frozenset(pids), start, end, reapers_back)
        self.faults.append(fault)
        return fault

    def acknowledge(self, ids: Iterable[str]) -> None:
        """Jobs whose submit returned (in another process): the checker wants them ended."""
        self.acknowledged.update(ids)

    def allow_pending(self, *ids: str) -> None:
        """Jobs the test leaves waiting or running on purpose."""
        self.may_be_pending.update(ids)

    def track_pid(self, pid: int) -> None:
        """Kill ``pid`` at teardown if it is still there (a grandchild a test spawned)."""
        self.stray_pids.append(pid)

    # -- jobs and evidence ---------------------------------------------------------------------
    def submit(
        self, task: str, *args: Any, options: offload.SubmitOptions | None = None
    ) -> offload.Job:
        """Submit a job by task name from the test process (durably stored on return)."""
        job = self.app.run_sync(self.app.asubmit_name(task, list(args), options=options))
        self.acknowledged.add(job.id)
        return job

    def submit_many(
        self,
        task: str,
        arg_lists: Sequence[list[Any]],
        options: offload.SubmitOptions | None = None,
    ) -> list[str]:
        """Submit one job per argument list, in batches (each batch stored all or none)."""
        app, spec = self.app, self.app.registry.get(task)
        ids: list[str] = []
        for start in range(0, len(arg_lists), 250):
            batch = [app.prepare(spec, args, {}, options or offload.SubmitOptions())
                     for args in arg_lists[start : start + 250]]  # fmt: skip
            ids += [job.id for job in app.run_sync(app.asubmit_many(batch))]
        self.acknowledged.update(ids)
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

    # -- the history check ---------------------------------------------------------------------
    def all_records(self) -> dict[str, JobRecord]:
        """Every stored job, of every tenant."""

        async def read(backend: Backend) -> dict[str, JobRecord]:
            found: dict[str, JobRecord] = {}
            cursor = None
            while True:
                page = await backend.list_jobs(JobFilter(limit=1000, cursor=cursor))
                found.update((r.id, r) for r in page.jobs)
                if page.next_cursor is None:
                    return found
                cursor = page.next_cursor

        return self.call(read)

    def all_histories(self, ids: Sequence[str]) -> dict[str, list[Transition]]:
        async def read(backend: Backend) -> dict[str, list[Transition]]:
            out: dict[str, list[Transition]] = {}
            for start in range(0, len(ids), 16):  # a few at a time: connections are pooled
                chunk = ids[start : start + 16]
                found = await asyncio.gather(*(backend.history(i) for i in chunk))
                out.update(zip(chunk, found, strict=True))
            return out

        return self.call(read)

    def reapers_back(self, fault: Fault) -> float:
        """When, after ``fault`` began, a worker that could sweep expired leases was running:
        one the fault did not touch, or the touched ones once it ended."""
        if fault.reapers_back is not None:
            return fault.reapers_back
        if fault.pids is None:  # every process was touched: until the fault ended
            return math.inf if fault.end is None else fault.end
        times = [] if fault.end is None else [fault.end]
        for w in self.workers:
            if not w.reaps or w.pid in fault.pids:
                continue
            at = max(w.ready_at or w.spawned_at, fault.start)
            if w.died_at is None or w.died_at > at:
                times.append(at)
        return min(times, default=math.inf)

    def check_history(self) -> Summary:
        """Run the history checker (module :mod:`history`) on everything stored and run so far;
        on SQLite, ``PRAGMA integrity_check`` too. Raises AssertionError on any problem."""
        if self.kind == "sqlite":
            self.assert_integrity()
        records = self.all_records()
        summary = history.check(
            history.Evidence(
                records=records,
                histories=self.all_histories(list(records)),
                runs=read_ledger(self.ledger),
                acknowledged=set(self.acknowledged),
                may_be_pending=set(self.may_be_pending),
                faults=list(self.faults),
                stats=self.counts(),
                reapers_back=self.reapers_back,
                lease=self.lease,
                reap=self.reap,
                slack=CHECK_SLACK,
            )
        )
        self.summary = summary
        return summary

    def assert_integrity(self) -> None:
        """SQLite's own check of the database file: pages, indexes, constraints."""
        path = self.url.removeprefix("sqlite:///").partition("?")[0]
        conn = sqlite3.connect(path, timeout=30)
        try:
            result = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
        assert result == [("ok",)], f"integrity_check of {path}: {result}"

    # -- teardown ------------------------------------------------------------------------------
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

    def cleanup(self) -> None:
        self.kill_all()
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
