"""The Redis bulk submit (issue 22 item 4): one ``submit`` call of :data:`BULK_MIN` jobs or more,
sent as SUBMIT_BULK scripts of :data:`CHUNK` jobs each, pipelined on one connection.

What a call guarantees:

- Every job is checked first (numbers, JSON, the same idempotency key with two different
  requests inside the call): a bad job raises ValueError or
  :class:`~offload.errors.IdempotencyConflict` naming its index, and nothing is sent.
- A call of up to :data:`CHUNK` jobs is one script: all or none, as a small submit.
- A larger call is stored chunk by chunk, in order, each chunk all or none (a Lua script is
  atomic). The first chunk also checks the idempotency keys of all the later ones before it
  writes, so a key reused with another request refuses the whole call. Only when a concurrent
  call stores a conflicting key between two chunks of this one is a later chunk refused: it
  writes nothing, closes the call's gate so that no chunk after it writes either, and the error
  (:class:`BulkSubmitError`) says how many leading jobs were stored. Submitting the same jobs
  again is safe: stored ids are returned as stored.
- A job is returned only after the script that stored it replied (nothing is acknowledged
  before Redis has it).

Why faster than SUBMIT for many jobs: checks run once per distinct set of numbers, a chunk's
ids are looked up in a few commands, not three per job, the script stores a new job with one
HSET of preformatted values, Python encodes chunk k+1 while Redis runs chunk k, and drafts the
records while Redis runs the last chunks (see docs/benchmarks.md, "Bulk submit on Redis, round
two").
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis import exceptions as rex

from offload.backends._common import check_new_job
from offload.backends.base import IDEMPOTENCY_WINDOW
from offload.backends.redis.conn import Scripts
from offload.backends.redis.records import job_from_flat, limit_fields
from offload.core.job import JobRecord, NewJob
from offload.core.states import State
from offload.core.validate import check_json
from offload.errors import BackendError, IdempotencyConflict, OffloadError, SerializationError

#: Jobs per SUBMIT_BULK script: the longest Redis is held by one call at a time (~10-30 ms).
CHUNK = 1000
#: Calls of this many jobs or more take the bulk path (smaller ones share SUBMIT runs).
BULK_MIN = 64


class BulkSubmitError(OffloadError):
    """A chunk of a large submit was refused after earlier chunks were stored (a concurrent
    call stored a conflicting idempotency key meanwhile). ``stored`` holds the records of the
    leading jobs that were stored; ``cause`` is the refusal."""

    def __init__(self, stored: list[JobRecord], index: int, cause: BaseException) -> None:
        self.stored, self.index, self.cause = stored, index, cause
        super().__init__(
            f"jobs 0 to {index - 1} of the batch were stored, jobs from index {index} on "
            f"were not: {cause}; submit those again once the conflict is resolved"
        )


def _check(jobs: Sequence[NewJob]) -> list[tuple[str, str, str]]:
    """Every job checked and its JSON encoded, before anything is sent (ValueError or
    SerializationError naming the job's index).

    The JSON is kept as ``str``: orjson's ``bytes`` are allocated large and shrunk, and keeping
    thousands of them alive cost ~2 us each on the test machine (decoded at once: ~0.15 us)."""
    valid: set[tuple[Any, ...]] = set()
    blobs = []
    keys: dict[tuple[str, str], tuple[str | None, int]] = {}
    dumps = orjson.dumps
    for i, job in enumerate(jobs):
        try:
            sig = (
                job.priority.__class__,
                job.priority,
                job.delay.__class__,
                job.delay,
                job.run_at.__class__,
                job.run_at,
                job.result_ttl.__class__,
                job.result_ttl,
                job.limits,
            )
            if sig not in valid:
                check_new_job(job)
                valid.add(sig)
            elif job.meta:
                check_json(job.meta, f"job {job.id}: meta")
            try:
                blobs.append(
                    (
                        dumps(job.args).decode(),
                        dumps(job.kwargs).decode(),
                        dumps(job.meta).decode(),
                    )
                )
            except TypeError as exc:
                raise SerializationError(f"value is not JSON-serializable: {exc}") from None
        except (ValueError, SerializationError) as exc:
            raise type(exc)(
                f"job at index {i} of the batch: {exc}; fix it and submit again "
                "(nothing was stored)"
            ) from None
        if job.idempotency_key is not None:
            first = keys.setdefault((job.tenant, job.idempotency_key), (job.fingerprint, i))
            if first[0] != job.fingerprint:  # the script would refuse it: refuse it now
                raise IdempotencyConflict(job.idempotency_key, jobs[first[1]].id)
    return blobs


def _rows(jobs: Sequence[NewJob], blobs: Sequence[tuple[str, str, str]]) -> bytes:
    """One chunk's SUBMIT rows as the script's JSON argument."""
    rows = []
    for job, (args, kwargs, meta) in zip(jobs, blobs, strict=True):
        key, ckey, run_at, ttl = (
            job.idempotency_key,
            job.concurrency_key,
            job.run_at,
            job.result_ttl,
        )
        rows.append(
            (
                job.id,
                job.task,
                job.queue,
                str(int(job.priority)),
                repr(float(job.delay)),
                "" if run_at is None else "=" + repr(float(run_at)),
                "" if key is None else "=" + key,
                job.fingerprint or "",
                "" if ckey is None else "=" + ckey,
                job.tenant,
                args,
                kwargs,
                meta,
                "" if ttl is None else "=" + repr(float(ttl)),
                *(("", "", "", "") if job.limits is None else limit_fields(job.limits)),
            )
        )
    return orjson.dumps(rows)


def _later_keys(jobs: Sequence[NewJob]) -> bytes | None:
    keys = [
        (j.idempotency_key, j.tenant, j.fingerprint or "")
        for j in jobs
        if j.idempotency_key is not None
    ]
    return orjson.dumps(keys) if keys else None


def _drafts(jobs: Sequence[NewJob], blobs: Sequence[tuple[str, str, str]]) -> list[JobRecord]:
    """The jobs' records as new queued jobs with their times not yet known (0.0): built while
    Redis runs the scripts, and completed by :func:`_records` from the reply before anything
    else sees them."""
    loads, queued = orjson.loads, State.QUEUED
    return [
        JobRecord(
            job.id,
            job.task,
            job.queue,
            queued,
            loads(args),
            loads(kwargs),
            int(job.priority),
            0,
            0,
            0.0,
            0.0,
            0.0,
            idempotency_key=job.idempotency_key,
            concurrency_key=job.concurrency_key,
            tenant=job.tenant,
            meta=loads(meta),
        )
        for job, (args, kwargs, meta) in zip(jobs, blobs, strict=True)
    ]


def _records(
    root: str, drafts: Sequence[JobRecord], group: Sequence[Any], now: float
) -> list[JobRecord]:
    """The records of one chunk from its SUBMIT_BULK reply ``{'ok', marks, old jobs...}``: a
    new job's draft completed (status, run_at, created_at and updated_at set, as a frozen
    dataclass's ``__init__`` sets them), a job stored before as it was stored."""
    out = []
    old = iter(group[2:])
    scheduled, put = State.SCHEDULED, object.__setattr__
    for draft, mark in zip(drafts, group[1].split(","), strict=True):
        if mark == "o":
            out.append(job_from_flat(next(old), root))
            continue
        if mark[0] == "s":
            put(draft, "status", scheduled)
        put(draft, "run_at", float(mark[1:]) if len(mark) > 1 else now)
        put(draft, "created_at", now)
        put(draft, "updated_at", now)
        out.append(draft)
    return out


def _refusal(reply: Sequence[Any]) -> BaseException:
    if reply[0] == "conflict":
        return IdempotencyConflict(reply[1], reply[2])
    if reply[0] == "invalid":
        return ValueError(reply[1])
    return BackendError(f"unexpected SUBMIT_BULK reply {reply[0]!r}")


async def submit_bulk(
    client: aioredis.Redis, scripts: Scripts, root: str, now_arg: str, jobs: Sequence[NewJob]
) -> list[JobRecord]:
    """Store ``jobs`` (see the module's docstring) over one connection of ``client``'s pool;
    redis-py's connection errors propagate (the caller maps them and may repeat the call:
    safe)."""
    pool = client.connection_pool
    blobs = _check(jobs)
    gate = uuid.uuid4().hex
    window = repr(IDEMPOTENCY_WINDOW)
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        try:
            return await _send(conn, scripts, root, now_arg, window, gate, jobs, blobs)
        except rex.ResponseError as exc:  # a restarted server: load the script, repeat (safe)
            if not scripts.missing(exc):
                raise
        await conn.send_command(*scripts.load_command("submit_bulk"))
        try:
            await conn.read_response()
        except rex.ResponseError as exc:
            if not scripts.loaded(exc):
                raise
        return await _send(conn, scripts, root, now_arg, window, gate, jobs, blobs)
    except BaseException:
        await conn.disconnect()  # replies may still be on their way
        raise
    finally:
        await pool.release(conn)


async def _send(
    conn: Any,
    scripts: Scripts,
    root: str,
    now_arg: str,
    window: str,
    gate: str,
    jobs: Sequence[NewJob],
    blobs: Sequence[tuple[str, str, str]],
) -> list[JobRecord]:
    """Send every chunk (encoding the next one while Redis runs the last), then read the
    replies in order."""
    starts = range(0, len(jobs), CHUNK)
    for start in starts:
        part = jobs[start : start + CHUNK]
        args: list[Any] = [now_arg, window, gate, _rows(part, blobs[start : start + CHUNK])]
        if start == 0 and len(jobs) > CHUNK:
            later = _later_keys(jobs[CHUNK:])
            if later is not None:
                args.append(later)
        await conn.send_packed_command(
            conn.pack_command(*scripts.command("submit_bulk", [root], args)), check_health=False
        )
    drafts = _drafts(jobs, blobs)  # while Redis runs the scripts
    records: list[JobRecord] = []
    failure: tuple[int, BaseException] | None = None
    error: rex.ResponseError | None = None
    for start in starts:
        try:
            reply = await conn.read_response()
        except rex.ResponseError as exc:  # the server refused this chunk: read the others
            error = error or exc
            continue
        now, group = float(reply[0]), reply[1]
        if group[0] == "ok":
            end = start + CHUNK
            records.extend(_records(root, drafts[start:end], group, now))
        elif group[0] != "gated" and failure is None:
            failure = (start, _refusal(group))
    if error is not None:  # every reply was read: the connection is fine
        if scripts.missing(error) or len(starts) > 1:
            # Some chunks may have been stored: repeating the call is safe (an id that is
            # stored already comes back as stored).
            if scripts.missing(error):
                raise error
            raise BackendError(
                f"Redis refused a chunk of a bulk submit ({error}); other chunks may have "
                "been stored: submitting the same jobs again is safe"
            )
        raise BackendError(f"Redis refused a bulk submit: {error}")
    if failure is not None:
        start, cause = failure
        if start == 0:
            raise cause
        raise BulkSubmitError(records[:start], start, cause)
    return records
