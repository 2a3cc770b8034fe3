"""The worker: claim due jobs into free slots, run them, keep their leases, shut down cleanly.

One worker is one process with ``concurrency`` slots shared by its executors. It serves a set
of queues, each optionally capped (``{"pdf": 2}``: at most two pdf jobs here at once).
On ``stop()`` it claims nothing more, gives running jobs ``shutdown_grace`` seconds, then stops
the rest and releases them to the queue at once (their attempt is not charged).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Mapping

from offload.backends import storage
from offload.backends.base import DEFAULT_CLAIM_BATCH, ClaimBatch
from offload.client import App
from offload.core.ids import new_worker_id
from offload.core.job import JobRecord, Lease, WorkerInfo
from offload.core.limits import check_cap
from offload.errors import BackendError, ConfigurationError
from offload.logs import LOG_FIELDS
from offload.settings import Settings
from offload.worker.context import JobContext
from offload.worker.executors.asyncio_ import AsyncExecutor
from offload.worker.executors.base import Executor
from offload.worker.executors.thread import ThreadExecutor
from offload.worker.lease import LeaseKeeper
from offload.worker.logfields import default_queues, describe_queues, job_fields
from offload.worker.observe import Observer
from offload.worker.progress import ProgressWriter
from offload.worker.runner import JobRunner, Running, StopReason
from offload.worker.scheduler import Scheduler
from offload.worker.slots import Slots
from offload.worker.startup import (
    first_heartbeat,
    loop_executor,
    open_when_up,
    process_executor,
    start_warden,
)
from offload.worker.waits import Waits
from offload.worker.warden import Warden

log = logging.getLogger("offload.worker")

#: How loudly each outcome is logged: every success at INFO would cost more than a no-op job.
OUTCOME_LEVELS = {
    "succeeded": logging.DEBUG,
    "released": logging.INFO,
    "retry": logging.INFO,
    "cancelled": logging.INFO,
    "failed": logging.WARNING,
    "lost": logging.WARNING,
}


class Worker:
    """Runs the jobs of ``app`` found in ``queues``.

    ``queues`` maps queue names to a cap on this worker's running jobs from that queue (None:
    no cap beyond ``concurrency``); by default every queue a registered task uses. ``app_path``
    (``module:attribute``) is needed only by tasks with ``executor="process"``; ``child_setup``
    (``module:function``, e.g. ``"django:setup"``) is called in each process-pool child before
    it imports ``app_path``.
    """

    def __init__(
        self,
        app: App,
        *,
        queues: Mapping[str, int | None] | None = None,
        concurrency: int | None = None,
        name: str | None = None,
        app_path: str | None = None,
        settings: Settings | None = None,
        parent_pid: int | None = None,
        child_setup: str | None = None,
    ) -> None:
        self.app = app
        self.parent_pid = parent_pid
        self.settings = settings or app.settings
        self.concurrency = self.settings.concurrency if concurrency is None else concurrency
        check_cap(self.concurrency, "concurrency")
        self.queues: dict[str, int | None] = dict(queues or default_queues(app.registry))
        self.name = name or socket.gethostname()
        self.id = new_worker_id(self.name)
        self.started_at = time.time()
        self.app_path, self.child_setup = app_path, child_setup
        self.backend = app.new_backend()
        self._warden = Warden()  # kills run_process groups if this process dies (kill -9)
        self._threads = ThreadExecutor(self.concurrency)
        self._executors: dict[str, Executor] = {"async": AsyncExecutor(), "thread": self._threads}
        self._runner = JobRunner(app.registry, self.backend, self._executors, self.settings)
        schedules = [s for s in app.schedules.values() if s.queue in self.queues]
        self.scheduler = Scheduler(app, self.backend, schedules) if schedules else None
        self._keeper = LeaseKeeper(
            app.new_backend(),
            self.id,
            self.settings,
            on_lost=lambda job_id: self._from_thread(job_id, "lost"),
            on_cancel=lambda job_id: self._from_thread(job_id, "cancel"),
            describe=self.describe,
            retention=app.retention(),
        )
        self._running: dict[str, Running] = {}  # claimed and not yet recorded
        self._slots = Slots(
            self.concurrency,
            self.queues,
            prefetch=self.settings.prefetch,
            alone_after=self.settings.run_alone_after,
        )
        max_chars = self.settings.max_progress_chars
        self._progress = ProgressWriter(self.backend, self._running, max_chars)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = asyncio.Event()
        self._stop_now = asyncio.Event()
        self._waits = Waits(self._stopping)  # the claim loop's waits for room and for work
        self._announced: asyncio.Future[None] | None = None  # the log line of a stop signal
        self._grace: float = self.settings.shutdown_grace
        self.processed = 0
        self._observer = Observer(self.settings, self.id)  # metrics and spans of each attempt
        #: True from start-up (backend open) until shutdown begins: what readiness reports
        self.serving = False

    def describe(self) -> WorkerInfo:
        """This worker as the list of live workers shows it (called from the keeper thread)."""
        return WorkerInfo(
            id=self.id,
            name=self.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=list(self.queues),
            concurrency=self.concurrency,
            started_at=self.started_at,
            last_seen=0.0,
            running=len(self._running),
            processed=self.processed,
        )

    @property
    def claim_batch(self) -> int:
        """Jobs one claim carries at most: ``OFFLOAD_CLAIM_BATCH``, or by default the backend's
        own (:class:`ClaimBatch`: 128 on PostgreSQL), else 32."""
        if self.settings.claim_batch > 0:
            return self.settings.claim_batch
        if isinstance(self.backend, ClaimBatch):
            return self.backend.claim_batch
        return DEFAULT_CLAIM_BATCH

    @property
    def prefetch(self) -> int:
        """How many jobs this worker claims beyond its free slots while jobs are short (-1: by
        their run time, see :meth:`Slots.ahead`)."""
        return self._slots.prefetch

    # -- control -------------------------------------------------------------------------------
    def stop(self, *, graceful: bool = True) -> None:
        """Stop claiming; running jobs get ``shutdown_grace`` seconds (none if not graceful)."""
        if not graceful:
            self._grace = 0.0
            self._stop_now.set()
        self._stopping.set()
        self._waits.stop()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop gracefully; a second one stops at once."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        graceful = not self._stopping.is_set()
        self.stop(graceful=graceful)
        self._announced = asyncio.ensure_future(self._announce(sig, graceful))

    async def _announce(self, sig: signal.Signals, graceful: bool) -> None:
        """Logged once claiming has stopped (the wait for work, cancelled, has ended)."""
        await self._waits.settled()
        log.info("received %s: %s", sig.name, "draining" if graceful else "stopping now")

    async def run(self) -> None:
        """Serve until ``stop()``; then drain, release and close everything."""
        if not await open_when_up(self.backend, self._stopping):
            return  # stopped before the backend ever answered: nothing was started
        try:
            await self._start()
        except ConfigurationError as exc:
            if not self._stopping.is_set():
                raise
            # A stop signal sent to the whole process group (systemd, Ctrl-C) also ended the
            # process children while they loaded the app: that is a stop, not an error.
            log.info("worker %s stopped while starting (%s)", self.id, exc)
            await self._close_resources()
            return
        watch = asyncio.create_task(self._watch_parent()) if self.parent_pid else None
        ticks = asyncio.create_task(self.scheduler.run()) if self.scheduler else None
        try:
            await self._claim_loop()
        finally:
            for task in (watch, ticks):
                if task is not None:
                    task.cancel()
            if ticks is not None:  # no tick is fired once stopping has begun
                await asyncio.gather(ticks, return_exceptions=True)
            await self._shutdown()

    async def _watch_parent(self) -> None:
        """A supervised worker stops (gracefully) when its supervisor is gone."""
        while os.getppid() == self.parent_pid:
            await asyncio.sleep(1.0)
        log.warning("supervisor %s is gone; stopping", self.parent_pid)
        self.stop()

    async def _start(self) -> None:
        self._loop = self._progress.loop = asyncio.get_running_loop()
        self._loop.set_default_executor(
            loop_executor(self.settings.loop_threads or self.concurrency)
        )
        if any(spec.executor == "process" for spec in self.app.registry):
            self._executors["process"] = process_executor(
                self.app_path, self.concurrency, self.child_setup
            )
        for executor in self._executors.values():
            await executor.start()
        start_warden(self._warden)
        await first_heartbeat(self.backend, self.describe(), self._keeper, self.settings.dead_after)
        self._keeper.start()
        self._observer.serving(lambda: self._keeper.reaped)
        if problem := await storage.check(self.backend, self.app.retention()):
            log.warning("finished jobs may fill the backend: %s", problem)
        log.info(
            "worker %s serving %s with %d slots",
            self.id,
            describe_queues(self.queues),
            self.concurrency,
        )
        self.serving = True

    # -- claiming ------------------------------------------------------------------------------
    def _room(self) -> dict[str, int]:
        if not self._keeper.heartbeat_fresh():
            return {}  # others may take this worker for dead: a job claimed now would be lost
        return self._slots.room(self._threads.detached)

    async def _claim_loop(self) -> None:
        pause = 0.05
        while not self._stopping.is_set():
            room = self._room()
            if not room:
                await self._waits.for_room(1.0)
                continue
            started, limit = time.monotonic(), min(max(room.values()), self.claim_batch)
            try:
                jobs = await self.backend.claim(
                    self.id,
                    room,
                    limit,
                    self.settings.lease_seconds,
                    idle=self._slots.takes_suspects(),
                )
            except BackendError as exc:
                log.warning("claim failed: %s; retrying in %.2fs", exc, pause)
                await self._waits.pause(pause)
                pause = min(pause * 2, 5.0)
                continue
            except Exception:  # a bug must not silently end the claim loop of a live worker
                log.exception("claim failed unexpectedly; retrying in %.2fs", pause)
                await self._waits.pause(pause)
                pause = min(pause * 2, 5.0)
                continue
            pause = 0.05
            for record in jobs:
                self._launch(record, started)
            if not jobs:
                await self._waits.for_work(
                    self.backend.wait_for_work(list(room), self.settings.idle_wait)
                )
            elif len(jobs) < limit:  # drained: let these start before the next (empty) claim
                await asyncio.sleep(0)

    def _launch(self, record: JobRecord, claimed_at: float) -> None:
        lease = Lease(record.id, record.token)
        ctx = JobContext(
            id=record.id,
            task=record.task,
            attempt=record.attempts,
            queue=record.queue,
            _sink=lambda f, m: self._progress.report(record.id, f, m),
            _watcher=self._warden,
            _owner_check=lambda: self._keeper.holds(record.id),
        )
        job = Running(record, lease, ctx, self._slots.seat(record))
        self._running[record.id] = job
        self._keeper.track(lease, claimed_at)
        job.task = asyncio.create_task(self._run(job), name=f"offload-job-{record.id}")

    async def _run(self, job: Running) -> None:
        rec = job.record
        fields = job_fields(rec)
        LOG_FIELDS.set(fields)  # this task's own context: every line logged by the job has them
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "job %s (%s) started, attempt %d", rec.id, rec.task, rec.attempts, extra=fields
            )
        watch = self._observer.start(rec)
        try:
            outcome = await self._runner.execute(job)
            watch.executed()
            lingering = self._threads.lingering(rec.id)  # a cancelled thread still running
            if self._slots.done(job.seat, lingering):  # only I/O is left: the next claim may share
                self._waits.room_freed()
            outcome = await self._runner.finish(job, outcome)
            watch.end(outcome.kind, stop_reason=job.stop_reason, outcome=outcome)
            if outcome.kind == "lost":
                log.warning(
                    "job %s (%s): lease lost; its outcome was discarded",
                    rec.id,
                    rec.task,
                    extra=fields,
                )
            elif log.isEnabledFor(level := OUTCOME_LEVELS[outcome.kind]):
                log.log(
                    level,
                    "job %s (%s) %s",
                    rec.id,
                    rec.task,
                    outcome.kind,
                    extra={**fields, "outcome": outcome.kind},
                )
        except Exception:
            log.exception("job %s: internal error in the worker", rec.id, extra=fields)
        finally:
            watch.end("failed")  # an internal error (else a no-op: it has ended)
            if self._slots.free(job.seat):
                self._waits.room_freed()
            self._keeper.untrack(rec.id)
            self._running.pop(rec.id, None)
            self.processed += 1

    # -- signals from the lease keeper and from job code ---------------------------------------
    def _from_thread(self, job_id: str, reason: StopReason) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop_job, job_id, reason)

    def _stop_job(self, job_id: str, reason: StopReason) -> None:
        job = self._running.get(job_id)
        if job is None or job.stop_reason is not None or not job.executing:
            return
        log.info("job %s: stopping (%s)", job_id, reason, extra=job_fields(job.record))
        job.stop_reason = reason
        job.ctx.request_cancel()
        if job.task is not None:
            job.task.cancel()

    # -- shutdown ------------------------------------------------------------------------------
    async def _close_resources(self) -> None:
        for executor in self._executors.values():
            await executor.close(grace=1.0)
        await self.backend.close()

    async def _shutdown(self) -> None:
        self.serving = False
        for job in list(self._running.values()):  # claimed ahead, not started: release them now
            if job.executing and not job.seat.held:
                self._stop_job(job.record.id, "shutdown")
        tasks = [j.task for j in self._running.values() if j.task is not None]
        if tasks and self._grace > 0:
            log.info("waiting up to %gs for %d running job(s)", self._grace, len(tasks))
            stop_now = asyncio.ensure_future(self._stop_now.wait())
            drained = asyncio.ensure_future(asyncio.wait(tasks))
            await asyncio.wait(
                {stop_now, drained}, timeout=self._grace, return_when=asyncio.FIRST_COMPLETED
            )
            for fut in (stop_now, drained):
                fut.cancel()
            await asyncio.gather(stop_now, drained, return_exceptions=True)
        leftover = list(self._running.values())
        for job in leftover:
            self._stop_job(job.record.id, "shutdown")
        await asyncio.gather(*(j.task for j in leftover if j.task), return_exceptions=True)
        for job in leftover:
            job.ctx.kill_process_groups()
        await asyncio.to_thread(self._warden.close)
        await asyncio.to_thread(self._keeper.stop)
        await self._close_resources()
        self._observer.stopped()
        log.info(
            "worker %s stopped after %d job(s); released %d", self.id, self.processed, len(leftover)
        )
