"""``redis://host:6379/0``: the distributed backend, for many workers on many machines.

Every state transition is one Lua script (:mod:`offload.backends._redis_lua`), loaded once and
re-loaded transparently after a Redis restart (redis-py's ``EVALSHA`` with ``NOSCRIPT``
fallback). Times come from Redis ``TIME``; all keys share the hash tag ``{prefix}`` (one
Cluster slot). Idle workers sleep on a pub/sub wake-up hint and always claim to find out.

URL options (the rest go to redis-py): ``prefix`` (namespace, default ``offload``) and
``strict`` (refuse to start when the server may lose jobs: eviction on, persistence off).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import orjson
import redis.asyncio as aioredis
from redis import exceptions as rex
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from offload.backends._batch import Batcher
from offload.backends._common import (
    check_new_job,
    check_retry_in,
    decode_cursor,
    encode_cursor,
)
from offload.backends._redis_conn import Lane, connection_class
from offload.backends._redis_data import (
    RedisURL,
    job_from_hash,
    opt,
    pairs,
    parse_redis_url,
    transition_from_json,
    worker_from_json,
    worker_to_json,
)
from offload.backends._redis_lua import SCRIPTS, script
from offload.backends.base import CANCEL_INSTEAD, DEFAULT_MAX_LOSSES, IDEMPOTENCY_WINDOW
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
from offload.core.limits import Limits
from offload.core.states import Reason, State
from offload.errors import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    IdempotencyConflict,
    InvalidTransition,
    JobNotFound,
    LeaseLost,
    SerializationError,
)

log = logging.getLogger("offload.backends.redis")
T = TypeVar("T")

MIN_VERSION = (6, 2)
#: Connections one backend object opens at most; more concurrent calls wait up to POOL_WAIT s.
MAX_CONNECTIONS = 64
POOL_WAIT = 10.0
#: Most index entries one list_jobs call reads while filtering (then it returns a cursor).
LIST_SCAN_BUDGET = 5000
_warned: set[str] = set()  # server problems already logged by this process


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
    ) -> None:
        self.url = url
        self.target: RedisURL = parse_redis_url(url)
        self.strict = strict or self.target.strict
        self.root = "{" + self.target.prefix + "}:"
        self.clock = clock  # None: Redis TIME (production); a ManualClock in tests
        self.max_losses = max_losses
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._lanes: dict[str, Lane] = {}  # a connection each for the hot, sequential scripts
        self._wake = asyncio.Event()
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
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
        try:
            # A busy process waits for a free connection rather than failing at a maximum.
            pool = aioredis.BlockingConnectionPool.from_url(
                self.target.connect_url,
                max_connections=MAX_CONNECTIONS,
                timeout=POOL_WAIT,
                decode_responses=True,
                socket_connect_timeout=5.0,
                socket_timeout=15.0,
                retry=Retry(NoBackoff(), 0),  # retries are ours: a claim must never run twice
                connection_class=connection_class(),
            )
            client = aioredis.Redis.from_pool(pool)  # closing the client closes the pool
        except ValueError as exc:
            raise ConfigurationError(f"invalid Redis URL for {self.target.shown}: {exc}") from None
        try:
            await self._check_server(client)
        except BaseException:
            await client.aclose()
            raise
        self._scripts = {name: client.register_script(script(name)) for name in SCRIPTS}
        # Claims come from one claim loop, outcomes and submits from one batcher each: never
        # two at once, so each gets a connection of its own (see Lane).
        self._lanes = {name: Lane(pool) for name in ("claim", "finish", "submit")}
        self._client = client

    async def _check_server(self, client: aioredis.Redis) -> None:
        where = self.target.shown
        try:
            info = await client.info()
        except TypeError as exc:  # redis-py passes unknown URL options on to its connections
            raise ConfigurationError(
                f"Redis URL for {where} has an unknown option ({exc}); see redis-py's URL "
                "options, or offload's own: prefix, strict"
            ) from None
        except rex.AuthenticationError as exc:
            if not self.target.has_password:
                raise ConfigurationError(
                    f"Redis at {where} needs a password; put it in the backend URL: "
                    "redis://:password@host:6379/0"
                ) from None
            raise ConfigurationError(
                f"Redis at {where} rejected the credentials ({exc}); fix the user/password in "
                "the backend URL: redis://user:password@host:6379/0"
            ) from None
        except (rex.ConnectionError, rex.TimeoutError) as exc:
            raise BackendUnavailable(
                f"cannot reach Redis at {where} ({exc}); start redis-server there or fix the "
                "backend URL (OFFLOAD_BACKEND)"
            ) from None
        except rex.ResponseError as exc:
            if "NOAUTH" in str(exc):
                raise ConfigurationError(
                    f"Redis at {where} needs a password; put it in the backend URL: "
                    "redis://:password@host:6379/0"
                ) from None
            raise BackendError(f"Redis at {where} refused INFO: {exc}") from None
        version = str(info.get("redis_version", "0"))
        numbers = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        if numbers < MIN_VERSION:
            raise ConfigurationError(
                f"Redis at {where} is version {version}; offload needs Redis "
                f"{'.'.join(map(str, MIN_VERSION))} or newer: upgrade the server"
            )
        problems = await _durability_problems(client, info)
        if problems and self.strict:
            raise ConfigurationError(
                f"Redis at {where} may lose jobs: {'; '.join(problems)} (refusing to start: strict)"
            )
        for problem in problems:
            if f"{where} {problem}" not in _warned:
                _warned.add(f"{where} {problem}")
                log.warning("Redis at %s may lose jobs: %s", where, problem)

    async def close(self) -> None:
        client, self._client = self._client, None
        await self._submits.close(_closed)
        await self._moves.close(_closed)
        lanes, self._lanes = self._lanes, {}
        for lane in lanes.values():
            await lane.close()
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        if self._pubsub is not None:
            # redis-py < 6 leaves PubSub.aclose unannotated: binding it to a typed name (not
            # calling it directly) type-checks on every supported version without an ignore.
            close_pubsub: Callable[[], Awaitable[None]] = self._pubsub.aclose
            await close_pubsub()
            self._pubsub = None
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
        """Run one Redis call, mapping redis-py errors to offload's. ``retry``: the call is
        safe to repeat, so a broken pooled connection (after a Redis restart) is retried once."""
        client = self.client
        for attempt in (1, 2):
            try:
                return await call(client)
            except (rex.ConnectionError, rex.TimeoutError, OSError, RuntimeError) as exc:
                if isinstance(exc, RuntimeError) and "closed" not in str(exc):
                    raise  # a bug, not a broken connection
                if not isinstance(exc, rex.ConnectionError | rex.TimeoutError):
                    # Under uvloop a connection the peer reset fails with a RuntimeError
                    # ("the handler is closed") that redis-py does not handle: drop the idle
                    # connections, so that the next call opens a fresh one.
                    await client.connection_pool.disconnect(inuse_connections=False)
                if retry and attempt == 1:
                    continue
                raise BackendUnavailable(
                    f"Redis at {self.target.shown} is unavailable ({exc}); retry later"
                ) from None
            except rex.ResponseError as exc:
                raise BackendError(
                    f"Redis at {self.target.shown} refused a command: {exc}"
                ) from None
        raise AssertionError("unreachable")

    async def _script(self, name: str, args: Sequence[Any], *, retry: bool = False) -> Any:
        runner = self._scripts[name]
        lane = self._lanes.get(name)
        if lane is not None:
            keys = [self.root]
            return await self._run(
                lambda c: lane.script(runner.sha, runner.script, keys, args), retry=retry
            )
        return await self._run(lambda c: runner(keys=[self.root], args=args, client=c), retry=retry)

    # -- writes --------------------------------------------------------------------------------
    async def submit(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        """Store one call's jobs, all or none; concurrent calls share one script run."""
        if not jobs:
            return []
        return await self._submits(list(jobs))

    async def _submit_groups(
        self, groups: Sequence[list[NewJob]]
    ) -> list[list[JobRecord] | BaseException]:
        """One script run for many submit calls. A call whose jobs cannot be encoded or
        stored gets its own error; the other calls of the batch go on."""
        out: list[list[JobRecord] | BaseException] = []
        sent: list[tuple[int, list[NewJob], list[_Blobs]]] = []
        args: list[Any] = [self._now_arg(), repr(IDEMPOTENCY_WINDOW)]
        for jobs in groups:
            try:
                rows, blobs = _encode_group(jobs)
            except (ValueError, SerializationError) as exc:
                out.append(exc)
                continue
            sent.append((len(out), jobs, blobs))
            out.append([])
            args.append(orjson.dumps(rows))
        if not sent:
            return out
        # Safe to repeat: an id that already exists is returned as stored.
        reply = await self._script("submit", args, retry=True)
        now = float(reply[0])
        for (slot, jobs, blobs_of_group), group in zip(sent, reply[1:], strict=True):
            out[slot] = self._submitted(jobs, blobs_of_group, group, now)
        return out

    def _submitted(
        self, jobs: list[NewJob], blobs_of_group: list[_Blobs], group: Sequence[Any], now: float
    ) -> list[JobRecord] | BaseException:
        if group[0] == "conflict":
            return IdempotencyConflict(group[1], group[2])
        if group[0] == "invalid":
            return ValueError(group[1])
        records = []
        for job, blobs, item in zip(jobs, blobs_of_group, group[1:], strict=True):
            if item[0] == "old":
                records.append(self._job(item[1:]))
                continue
            records.append(
                JobRecord(
                    id=job.id, task=job.task, queue=job.queue, status=State(item[1]),
                    args=orjson.loads(blobs[0]), kwargs=orjson.loads(blobs[1]),
                    priority=int(job.priority), attempts=0, losses=0, run_at=float(item[2]),
                    created_at=now, updated_at=now, idempotency_key=job.idempotency_key,
                    concurrency_key=job.concurrency_key, tenant=job.tenant,
                    meta=orjson.loads(blobs[2]),
                )
            )  # fmt: skip
        return records

    def _job(self, flat: Sequence[str]) -> JobRecord:
        h = pairs(flat)
        return job_from_hash(h, f"{self.root}j:{h.get('id', '?')}")

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
        self._wake.clear()  # a submit after this point wakes wait_for_work
        args: list[Any] = [self._now_arg(), worker_id, repr(float(lease_seconds)), limit,
                           "1" if idle else "0"]  # fmt: skip
        for queue, cap in room:
            args += [queue, cap]
        reply = await self._script("claim", args)
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
        args = [self._now_arg(), lease.job_id, str(lease.token),
                "" if fraction is None else "=" + repr(float(fraction)), opt(message)]  # fmt: skip
        if await self._script("progress", args, retry=True) == "lost":
            raise LeaseLost(lease.job_id, lease.token)

    async def complete(self, lease: Lease, result: Any, *, then: Sequence[NewJob] = ()) -> None:
        rows, _ = _encode_group(then)
        await self._finish(
            lease, State.SUCCEEDED, Reason.SUCCEEDED, result=dumps(result),
            then=b"=" + orjson.dumps(rows) if rows else b"",
        )  # fmt: skip

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
            lease, "finish", target.value, reason.value,
            b"" if result is None else b"=" + result,
            b"" if error is None else b"=" + dumps(error), opt(detail), then,
        )  # fmt: skip

    async def _move(self, lease: Lease, op: str, *extra: Any) -> None:
        """One move of a running job; concurrent moves share one script run."""
        await self._moves((lease.job_id, str(lease.token), op, *extra))

    async def _move_many(self, ops: Sequence[tuple[Any, ...]]) -> list[BaseException | None]:
        args: list[Any] = [self._now_arg(), CANCEL_INSTEAD]
        for op in ops:
            args += [len(op), *op]
        replies = await self._script("finish", args)
        return [_move_error(op, reply) for op, reply in zip(ops, replies, strict=True)]

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

    async def prune(self, limit: int = 500) -> int:
        return int(await self._script("prune", [self._now_arg(), limit]))

    # -- reads ---------------------------------------------------------------------------------
    async def get(self, job_id: str) -> JobRecord | None:
        key = f"{self.root}j:{job_id}"
        h = await self._hash(key)
        return job_from_hash(h, key) if h else None

    async def _hash(self, key: str) -> dict[str, str]:
        # decode_responses=True; the cast also covers redis-py < 6, whose stubs say "awaitable
        # or not" for every command of the asyncio client.
        return await self._run(
            lambda c: cast(Awaitable[dict[str, str]], c.hgetall(key)), retry=True
        )

    async def list_jobs(self, flt: JobFilter) -> Page:
        """Newest first from the smallest index that fits the filter, checking the rest of the
        filter on each job; reads at most LIST_SCAN_BUDGET entries, then returns a cursor."""
        indexes = [f"{self.root}i:all"]
        for name, value in (("st", flt.status.value if flt.status else None),
                            ("tk", flt.task), ("q", flt.queue), ("tn", flt.tenant)):  # fmt: skip
            if value is not None:
                indexes.append(f"{self.root}i:{name}:{value}")
        index = indexes[0]
        if len(indexes) > 1:

            async def sizes(c: aioredis.Redis) -> list[int]:
                async with c.pipeline(transaction=False) as pipe:
                    for key in indexes[1:]:
                        pipe.zcard(key)
                    return list(await pipe.execute())

            counts = await self._run(sizes, retry=True)
            index = min(zip(counts, indexes[1:], strict=True))[1]
        after = decode_cursor(flt.cursor) if flt.cursor is not None else None
        top = "+inf" if after is None else repr(after[0])
        found: list[JobRecord] = []
        scanned = 0
        last: tuple[float, str] | None = None
        while len(found) <= flt.limit and scanned < LIST_SCAN_BUDGET:
            batch = max(2 * flt.limit, 100)
            entries: list[tuple[str, float]] = await self._run(
                lambda c, start=scanned, n=batch: c.zrevrangebyscore(  # type: ignore[misc]
                    index, top, "-inf", start=start, num=n, withscores=True
                ),
                retry=True,
            )
            if not entries:
                last = None
                break
            scanned += len(entries)
            wanted = [(i, s) for i, s in entries if after is None or (s, i) < after]
            for record in await self._fetch([i for i, _ in wanted]):
                if _matches(record, flt):
                    found.append(record)
            last = (entries[-1][1], entries[-1][0])
        if len(found) > flt.limit:
            page = found[: flt.limit]
            return Page(page, encode_cursor(page[-1].created_at, page[-1].id))
        cursor = encode_cursor(*last) if last is not None and scanned >= LIST_SCAN_BUDGET else None
        return Page(found, cursor)

    async def _fetch(self, ids: Sequence[str]) -> list[JobRecord]:
        if not ids:
            return []

        async def read(c: aioredis.Redis) -> list[dict[str, str]]:
            async with c.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hgetall(f"{self.root}j:{job_id}")
                return list(await pipe.execute())

        hashes = await self._run(read, retry=True)
        return [
            job_from_hash(h, f"{self.root}j:{i}") for i, h in zip(ids, hashes, strict=True) if h
        ]

    async def history(self, job_id: str) -> list[Transition]:
        key = f"{self.root}h:{job_id}"
        job_key = f"{self.root}j:{job_id}"

        async def read(c: aioredis.Redis) -> list[Any]:
            async with c.pipeline(transaction=False) as pipe:
                pipe.hmget(job_key, ["created_at", "submitted_as"])
                pipe.lrange(key, 0, -1)
                return list(await pipe.execute())

        (created, initial), raw = await self._run(read, retry=True)
        if created is None:
            return []
        try:
            first = Transition(job_id, float(created), None, State(initial), Reason.SUBMITTED, 0, 0)
            return [first, *(transition_from_json(job_id, entry) for entry in raw)]
        except (ValueError, TypeError, KeyError) as exc:
            raise BackendError(f"corrupt history under Redis key {key!r}: {exc}") from None

    async def stats(self) -> list[QueueStats]:
        key = f"{self.root}counts"
        raw = await self._hash(key)
        counts: dict[str, dict[State, int]] = {}
        for field, value in raw.items():
            queue, _, status = field.rpartition("\0")
            if int(value) > 0:
                counts.setdefault(queue, {})[State(status)] = int(value)
        return [QueueStats(q, c) for q, c in sorted(counts.items())]

    async def heartbeat(self, worker: WorkerInfo, *, ttl: float) -> None:
        args = [self._now_arg(), worker.id, repr(float(ttl)), worker_to_json(worker)]
        await self._script("heartbeat", args, retry=True)

    async def workers(self) -> list[WorkerInfo]:
        reply = await self._script("workers", [self._now_arg()], retry=True)
        live = [worker_from_json(reply[i], reply[i + 1]) for i in range(1, len(reply), 2)]
        return sorted(live, key=lambda w: (w.started_at, w.id))

    # -- waiting for work ----------------------------------------------------------------------
    async def wait_for_work(self, queues: Sequence[str], timeout: float) -> None:
        """Sleep until a submit makes one of ``queues`` non-empty (a pub/sub hint), a scheduled
        job falls due, or ``timeout`` passes."""
        try:
            await self._listen()
            ready, due, now = await self._script("ready", [self._now_arg(), *queues], retry=True)
        except (BackendError, rex.RedisError):
            await asyncio.sleep(min(timeout, 0.05))  # the caller's claim reports the problem
            return
        if ready:
            return
        wait = timeout if due == "" else min(timeout, max(0.0, float(due) - float(now)))
        try:
            await asyncio.wait_for(self._wake.wait(), wait)
        except TimeoutError:
            pass

    async def _listen(self) -> None:
        if self._listener is not None and not self._listener.done():
            return
        if self._pubsub is None:
            self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(f"{self.root}wake")
        self._listener = asyncio.create_task(self._read_wakeups(self._pubsub))

    async def _read_wakeups(self, pubsub: PubSub) -> None:
        pause = 0.05
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
                pause = 0.05
            except (rex.ConnectionError, rex.TimeoutError, OSError) as exc:
                log.debug("wake-up channel interrupted (%s); reconnecting", exc)
                self._wake.set()  # let the claim loop find out what it missed
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            if message is not None:
                self._wake.set()


_Blobs = tuple[bytes, bytes, bytes]


def _encode_group(jobs: Sequence[NewJob]) -> tuple[list[tuple[str, ...]], list[_Blobs]]:
    """The SUBMIT machinery's rows for one call's jobs (ValueError or SerializationError when
    a job cannot be stored)."""
    rows: list[tuple[str, ...]] = []
    blobs_of_group = []
    for job in jobs:
        check_new_job(job)
        blobs = (dumps(job.args), dumps(job.kwargs), dumps(job.meta))
        blobs_of_group.append(blobs)
        rows.append((
            job.id, job.task, job.queue, str(int(job.priority)), repr(float(job.delay)),
            "" if job.run_at is None else "=" + repr(float(job.run_at)),
            opt(job.idempotency_key), job.fingerprint or "", opt(job.concurrency_key),
            job.tenant, blobs[0].decode(), blobs[1].decode(), blobs[2].decode(),
            "" if job.result_ttl is None else "=" + repr(float(job.result_ttl)),
            *_limit_fields(job.limits),
        ))  # fmt: skip
    return rows, blobs_of_group


def _move_error(op: tuple[Any, ...], reply: str) -> BaseException | None:
    """The error one op of a FINISH run stands for, if any."""
    if reply == "lost":
        return LeaseLost(op[0], int(op[1]))
    if reply == "invalid":
        return ValueError(f"job {op[0]}: a retry delay must be a finite number >= 0 seconds")
    if reply.startswith("invalid\0"):  # a successor of a workflow step
        return ValueError(reply.split("\0", 1)[1])
    if reply.startswith("conflict\0"):
        _, key, job_id = reply.split("\0", 2)
        return IdempotencyConflict(key, job_id)
    return None


def _limit_fields(limits: Limits | None) -> tuple[str, str, str, str]:
    """A job's limits as four optional script strings: cap, key_cap, rate, key_rate."""
    if limits is None:
        return ("", "", "", "")
    return (
        "" if limits.concurrency is None else f"={limits.concurrency}",
        "" if limits.key_concurrency is None else f"={limits.key_concurrency}",
        "" if limits.rate is None else "=" + repr(limits.rate),
        "" if limits.key_rate is None else "=" + repr(limits.key_rate),
    )


def _matches(job: JobRecord, flt: JobFilter) -> bool:
    return (
        (flt.status is None or job.status is flt.status)
        and (flt.task is None or job.task == flt.task)
        and (flt.queue is None or job.queue == flt.queue)
        and (flt.tenant is None or job.tenant == flt.tenant)
    )


async def _durability_problems(client: aioredis.Redis, info: Mapping[str, Any]) -> list[str]:
    """What in the server's settings can lose acknowledged jobs."""
    problems: list[str] = []
    policy = info.get("maxmemory_policy", "noeviction")
    if policy != "noeviction":
        problems.append(
            f"maxmemory-policy is {policy}, so Redis may evict job keys under memory pressure "
            "(set maxmemory-policy noeviction)"
        )
    if int(info.get("aof_enabled", 0)) != 1:
        try:
            save = (await client.config_get("save")).get("save", "")
        except rex.ResponseError:  # CONFIG is disabled (managed Redis): cannot tell
            return problems
        if save:
            problems.append(
                "only RDB snapshots are on: jobs acknowledged since the last snapshot are lost "
                "if Redis crashes (set appendonly yes)"
            )
        else:
            problems.append(
                "persistence is off: a Redis restart loses every job (set appendonly yes)"
            )
    return problems
