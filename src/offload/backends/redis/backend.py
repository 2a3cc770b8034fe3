"""``redis://host:6379/0``: the distributed backend, for many workers on many machines.

Every state transition is one Lua script (:mod:`offload.backends.redis.scripts`), a Redis
Function (Redis >= 7.0; else EVALSHA: see conn.Scripts), re-loaded after a Redis restart. Times
come from Redis ``TIME``; all keys share the hash tag ``{prefix}`` (one Cluster slot). An idle
worker is handed jobs by submits, or woken by a hint (wake.py). URL options (the rest go to
redis-py): ``prefix`` (namespace, default ``offload``) and ``strict`` (refuse to start when
the server may lose jobs: eviction on, persistence off)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import orjson
import redis.asyncio as aioredis
from redis import exceptions as rex

from offload.backends._batch import Batcher
from offload.backends._common import check_retry_in
from offload.backends.base import CANCEL_INSTEAD, DEFAULT_MAX_LOSSES
from offload.backends.redis import reads
from offload.backends.redis.bulk import BULK_MIN, submit_bulk
from offload.backends.redis.conn import Lane, Scripts, choose_scripts, open_pool, run
from offload.backends.redis.records import (
    encode_group,
    job_from_flat,
    move_error,
    opt,
    worker_from_json,
    worker_to_json,
)
from offload.backends.redis.server import check_server
from offload.backends.redis.submitting import BlockingSubmits, Outcome, read_reply, submit_args
from offload.backends.redis.url import RedisURL, parse_redis_url
from offload.backends.redis.wake import Handoffs, Wakeups, claim_args
from offload.core.clock import Clock
from offload.core.codec import dumps
from offload.core.job import (
    JobFilter,
    JobRecord,
    Lease,
    NewJob,
    Page,
    QueueStats,
    RenewResult,
    Transition,
    WorkerInfo,
)
from offload.core.retention import RetentionPolicy
from offload.core.states import Reason, State
from offload.errors import (
    BackendError,
    BackendUnavailable,
    InvalidTransition,
    JobNotFound,
    LeaseLost,
)

log = logging.getLogger("offload.backends.redis")
T = TypeVar("T")


def _closed() -> BackendUnavailable:
    return BackendUnavailable("the Redis backend was closed")


class RedisBackend:
    """Jobs in one Redis (or one Redis Cluster slot), under a namespace prefix."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        max_losses: int = DEFAULT_MAX_LOSSES,
        strict: bool = False,
        functions: bool = True,
    ) -> None:
        self.url = url
        self.target: RedisURL = parse_redis_url(url)
        self.strict = strict or self.target.strict
        self.root = "{" + self.target.prefix + "}:"
        self.clock = clock  # None: Redis TIME (production); a ManualClock in tests
        self.max_losses = max_losses
        self._client: aioredis.Redis | None = None
        self.functions = functions  # FCALL when the server allows (False: EVALSHA always)
        self._scripts = Scripts(False)
        self._lanes: dict[str, Lane] = {}  # a connection each for the hot, sequential scripts
        self._blocking: BlockingSubmits | None = None  # submits from sync code (the sync face)
        self._blocking_lock = threading.Lock()
        self._wakeups = Wakeups()
        self._handoffs = Handoffs(self.root, self._wakeups)
        self._submits = Batcher(self._submit_groups)
        self._moves: Batcher[tuple[Any, ...], None] = Batcher(self._move_many)

    @classmethod
    def from_url(
        cls, url: str, *, clock: Clock | None = None, strict: bool = False
    ) -> RedisBackend:
        return cls(url, clock=clock, strict=strict)

    # -- lifecycle -----------------------------------------------------------------------------
    async def open(self) -> None:
        if self._client is not None:
            return
        pool, client = open_pool(self.target.connect_url, self.target.shown)
        try:
            await self._check_server(client)
            self._scripts = await run(
                client,
                self.target.shown,
                lambda c: choose_scripts(c, self.functions, self.root),
                retry=True,
            )
        except BaseException:
            await client.aclose()
            raise
        # Claims come from one claim loop, outcomes and submits from one batcher each: never
        # two at once, so each gets a connection of its own (see Lane).
        self._lanes = {name: Lane(pool) for name in ("claim", "finish", "submit")}
        self._client = client

    async def _check_server(self, client: aioredis.Redis) -> None:
        await check_server(client, self.target, strict=self.strict)

    async def close(self) -> None:
        if self._client is not None:
            await self._leave()
        client, self._client = self._client, None
        with self._blocking_lock:  # after _client: no submit_blocking opens one again
            blocking, self._blocking = self._blocking, None
        if blocking is not None:
            blocking.close()
        await self._submits.close(_closed)
        await self._moves.close(_closed)
        lanes, self._lanes = self._lanes, {}
        for lane in lanes.values():
            await lane.close()
        await self._wakeups.close()
        if client is not None:
            await client.aclose()

    async def ping(self) -> None:
        await self._run(lambda c: cast(Awaitable[object], c.ping()), retry=True)  # see _hash

    async def now(self) -> float:
        if self.clock is not None:
            return self.clock.now()
        seconds, micros = await self._run(lambda c: c.time(), retry=True)
        return float(seconds) + float(micros) / 1e6

    # -- plumbing ------------------------------------------------------------------------------
    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise BackendError("the Redis backend is not open: call open() first")
        return self._client

    def _now_arg(self) -> str:
        return "" if self.clock is None else repr(self.clock.now())

    async def _run(
        self, call: Callable[[aioredis.Redis], Awaitable[T]], *, retry: bool = False
    ) -> T:
        """One Redis call, with redis-py's errors mapped to offload's (see conn.run)."""
        return await run(self.client, self.target.shown, call, retry=retry)

    async def _script(self, name: str, args: Sequence[Any], *, retry: bool = False) -> Any:
        scripts, keys, lane = self._scripts, [self.root], self._lanes.get(name)
        if lane is not None:
            return await self._run(lambda c: lane.script(scripts, name, keys, args), retry=retry)
        return await self._run(
            lambda c: scripts.call(c.execute_command, name, keys, args), retry=retry
        )

    # -- writes --------------------------------------------------------------------------------
    async def submit(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        """Store one call's jobs, all or none; concurrent calls share one script run."""
        if not jobs:
            return []
        if len(jobs) >= BULK_MIN:  # pipelined chunks of their own (see bulk.py)
            s, now = self._scripts, self._now_arg()
            return await self._run(lambda c: submit_bulk(c, s, self.root, now, jobs), retry=True)
        return await self._submits(list(jobs))

    #: The most jobs :meth:`submit_blocking` is given: larger calls take the bulk path.
    blocking_max = BULK_MIN - 1

    def submit_blocking(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        """:meth:`submit` from synchronous code, on the calling thread (see submitting.py)."""
        blocking = self._blocking or self._open_blocking()
        return blocking.submit(list(jobs)) if jobs else []

    def _open_blocking(self) -> BlockingSubmits:
        with self._blocking_lock:  # sync callers may race here from many threads
            if self._client is None:
                raise BackendError("the Redis backend is not open: call open() first")
            if self._blocking is None:
                url, shown = self.target.connect_url, self.target.shown
                self._blocking = BlockingSubmits(
                    url, shown, self.root, self._scripts, self._now_arg
                )
            return self._blocking

    async def _submit_groups(self, groups: Sequence[list[NewJob]]) -> list[Outcome]:
        """One script run for many submit calls; a call that fails gets its own error."""
        args, sent, out = submit_args(self._now_arg(), groups)
        if not sent:
            return out
        # Safe to repeat: an id that already exists is returned as stored.
        return read_reply(self.root, await self._script("submit", args, retry=True), sent, out)

    def _job(self, flat: Sequence[str]) -> JobRecord:
        return job_from_flat(flat, self.root)

    async def claim(
        self,
        worker_id: str,
        queues: Mapping[str, int],
        limit: int,
        lease_seconds: float,
        *,
        idle: bool = False,
    ) -> list[JobRecord]:
        room = [(q, n) for q, n in queues.items() if n > 0]
        if limit <= 0 or not room:
            return []
        self._wakeups.clear()  # a submit after this point wakes wait_for_work
        reply = self._handoffs.claim(worker_id, lease_seconds)  # handed to it: no round trip
        if not reply:
            args = claim_args(self._now_arg(), worker_id, lease_seconds, limit, idle, room)
            reply = self._handoffs.fresh(await self._script("claim", args))
        jobs: list[JobRecord] = []
        for flat in reply:
            try:
                jobs.append(self._job(flat))
            except BackendError as exc:  # its lease expires and the reaper deals with it
                log.error("claimed a job that cannot be read: %s", exc)
        return jobs

    async def renew(
        self, worker_id: str, leases: Sequence[Lease], lease_seconds: float | None
    ) -> RenewResult:
        if not leases:
            return RenewResult(frozenset(), frozenset())
        args: list[Any] = [self._now_arg(), "" if lease_seconds is None else repr(lease_seconds)]
        for lease in leases:
            args += [lease.job_id, str(lease.token)]
        lost, cancel = await self._script("renew", args, retry=True)
        return RenewResult(frozenset(lost), frozenset(cancel))

    async def progress(self, lease: Lease, fraction: float | None, message: str | None) -> None:
        args = [
            self._now_arg(),
            lease.job_id,
            str(lease.token),
            "" if fraction is None else "=" + repr(float(fraction)),
            opt(message),
        ]
        if await self._script("progress", args, retry=True) == "lost":
            raise LeaseLost(lease.job_id, lease.token)

    async def complete(self, lease: Lease, result: Any, *, then: Sequence[NewJob] = ()) -> None:
        rows, _ = encode_group(then)
        await self._finish(
            lease,
            State.SUCCEEDED,
            Reason.SUCCEEDED,
            result=dumps(result),
            then=b"=" + orjson.dumps(rows) if rows else b"",
        )

    async def fail(
        self,
        lease: Lease,
        error: dict[str, Any],
        *,
        retry_in: float | None = None,
        reason: Reason = Reason.FAILED,
    ) -> None:
        check_retry_in(retry_in)
        if retry_in is None:
            await self._finish(lease, State.FAILED, reason, error=error)
            return
        await self._move(
            lease, "retry", repr(float(retry_in)), dumps(error), opt(error.get("message"))
        )

    async def mark_cancelled(self, lease: Lease, error: dict[str, Any] | None = None) -> None:
        await self._finish(lease, State.CANCELLED, Reason.CANCELLED, error=error)

    async def release(self, lease: Lease) -> None:
        await self._move(lease, "release")

    async def _finish(
        self,
        lease: Lease,
        target: State,
        reason: Reason,
        *,
        result: bytes | None = None,
        error: dict[str, Any] | None = None,
        then: bytes = b"",
    ) -> None:
        detail = error.get("message") if error else None
        await self._move(
            lease,
            "finish",
            target.value,
            reason.value,
            b"" if result is None else b"=" + result,
            b"" if error is None else b"=" + dumps(error),
            opt(detail),
            then,
        )

    async def _move(self, lease: Lease, op: str, *extra: Any) -> None:
        """One move of a running job; concurrent moves share one script run."""
        await self._moves((lease.job_id, str(lease.token), op, *extra))

    async def _move_many(self, ops: Sequence[tuple[Any, ...]]) -> list[BaseException | None]:
        args: list[Any] = [self._now_arg(), CANCEL_INSTEAD]
        for op in ops:
            args += [len(op), *op]
        replies = await self._script("finish", args)
        return [move_error(op, reply) for op, reply in zip(ops, replies, strict=True)]

    async def cancel(self, job_id: str) -> JobRecord:
        reply = await self._script("cancel", [self._now_arg(), job_id])
        if reply[0] == "missing":
            raise JobNotFound(job_id)
        if reply[0] == "invalid":
            raise InvalidTransition(job_id, reply[1], State.CANCELLED.value)
        return self._job(reply[1:])

    async def reap(self, limit: int = 100) -> int:
        args = [self._now_arg(), limit, self.max_losses, CANCEL_INSTEAD]
        return int(await self._script("reap", args))

    async def reclaim_dead(self, grace: float, limit: int = 100) -> int:
        ended = int(await self._script("reclaim", [self._now_arg(), repr(float(grace)), limit]))
        return await self.reap(limit) if ended else 0

    async def prune(self, limit: int = 500, policy: RetentionPolicy | None = None) -> int:
        rules = "" if policy is None else orjson.dumps(policy.as_json()).decode()
        return int(await self._script("prune", [self._now_arg(), limit, rules]))

    # -- reads ---------------------------------------------------------------------------------
    async def get(self, job_id: str) -> JobRecord | None:
        return await reads.get(self._run, self.root, job_id)

    async def _hash(self, key: str) -> dict[str, str]:
        # decode_responses=True; the cast also covers redis-py < 6, whose stubs say "awaitable
        # or not" for every command of the asyncio client.
        return await self._run(
            lambda c: cast(Awaitable[dict[str, str]], c.hgetall(key)), retry=True
        )

    async def list_jobs(self, flt: JobFilter) -> Page:
        """Newest first from the smallest index that fits the filter (see reads.list_jobs)."""
        return await reads.list_jobs(
            self._run, lambda name, args: self._script(name, args, retry=True), self.root, flt
        )

    async def history(self, job_id: str) -> list[Transition]:
        return await reads.history(self._run, self.root, job_id)

    async def stats(self) -> list[QueueStats]:
        return await reads.stats(self._run, self.root, await self.now())

    async def heartbeat(self, worker: WorkerInfo, *, ttl: float) -> None:
        args = [self._now_arg(), worker.id, repr(float(ttl)), worker_to_json(worker)]
        await self._script("heartbeat", args, retry=True)

    async def workers(self) -> list[WorkerInfo]:
        reply = await self._script("workers", [self._now_arg()], retry=True)
        live = [worker_from_json(reply[i], reply[i + 1]) for i in range(1, len(reply), 2)]
        return sorted(live, key=lambda w: (w.started_at, w.id))

    # -- waiting for work ----------------------------------------------------------------------
    async def wait_for_work(self, queues: Sequence[str], timeout: float) -> None:
        """Sleep until a job is handed over, a hint, a due job, or ``timeout`` (wake.py)."""
        try:
            now, script = self._now_arg(), self._script
            await self._handoffs.wait_for_work(self.client, script, now, queues, timeout)
        except (BackendError, rex.RedisError):
            await asyncio.sleep(min(timeout, 0.05))  # the caller's claim reports the problem

    async def _leave(self) -> None:
        """End a worker's hand-off registration; release the jobs handed to it, not started."""
        try:
            for job in map(self._job, await self._handoffs.leave(self._script, self._now_arg())):
                await self.release(Lease(job.id, job.token))
        except (BackendError, LeaseLost) as exc:
            log.warning("could not give back the jobs handed to this worker: %s", exc)
        await self._handoffs.close()
