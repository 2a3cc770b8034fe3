"""A fault test's scenario: one backend kind, a client App, processes and evidence.

:class:`Faults` runs on ``sqlite`` (a fresh file), ``postgres`` (a fresh schema in the test
session's database) or ``redis`` (a fresh namespace on the shared test server, or any
``redis://`` URL a test passes, such as a private server it kills). It joins
:class:`~faultkit.processes.Processes` and :class:`~faultkit.ledger.Ledger` and adds the waits a
scenario is written with.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import redis
from history import Fault, Summary

import offload
from pgkit import postgres_schema_url
from rediskit import TEST_REDIS

from .ledger import Ledger
from .processes import LEASE, REAP, Processes, WorkerProcess, wait_until

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


class Faults(Processes, Ledger):
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

    def marker(self, tag: str, run: int, timeout: float = 10.0) -> dict[str, Any]:
        """The start marker of run ``run`` of job ``tag``, once it exists."""
        path = self.marks / f"{tag}.{run}.json"
        wait_until(path.exists, timeout, f"run {run} of job {tag} to start")
        return json.loads(path.read_text())  # type: ignore[no-any-return]

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

    def cleanup(self) -> None:
        self.kill_all()
        self.kill_strays()
        self.app.close()
        if self.own_namespace is not None:
            drop_namespace(self.own_namespace)
