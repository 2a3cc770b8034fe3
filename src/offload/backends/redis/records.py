"""The Redis backend's records: jobs encoded for its scripts, and its replies decoded.

Stored data that is not what offload wrote (a missing field, text that is not JSON) raises
:class:`~offload.errors.BackendError` naming the key, so a worker reports it instead of crashing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from offload.backends._common import check_new_job
from offload.backends.redis.scripts import ENDED_DEFAULTS, ENDED_FIELDS
from offload.core.codec import dumps
from offload.core.job import JobRecord, NewJob, Transition, WorkerInfo
from offload.core.limits import Limits
from offload.core.states import Reason, State
from offload.errors import BackendError, IdempotencyConflict, LeaseLost


def pairs(flat: Sequence[str]) -> dict[str, str]:
    """A flat HGETALL reply as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def job_from_flat(flat: Sequence[str], root: str) -> JobRecord:
    """A job from a flat HGETALL reply of a script (keys under ``root``)."""
    h = pairs(flat)
    return job_from_hash(h, f"{root}j:{h.get('id', '?')}")


def _float(value: str | None) -> float | None:
    return None if value is None else float(value)


def job_from_hash(h: dict[str, str], where: str) -> JobRecord:
    """One job hash as a JobRecord; BackendError when it is not a job offload wrote."""
    try:
        get = h.get
        result = get("result")
        error = get("error")
        return JobRecord(
            id=h["id"],
            task=h["task"],
            queue=h["queue"],
            status=State(h["status"]),
            args=orjson.loads(h["args"]),
            kwargs=orjson.loads(h["kwargs"]),
            priority=int(get("priority", 0)),  # an ended job's record: no 0s
            attempts=int(h["attempts"]),
            losses=int(get("losses", 0)),
            # an ended job keeps neither when they repeat created_at and finished_at (retire())
            run_at=float(get("run_at") or h["created_at"]),
            created_at=float(h["created_at"]),
            updated_at=float(get("updated_at") or h["finished_at"]),
            started_at=_float(get("started_at")),
            finished_at=_float(get("finished_at")),
            token=int(h["token"]),
            worker_id=get("worker_id"),
            lease_until=_float(get("lease_until")),
            progress=_float(get("progress")),
            progress_message=get("progress_message"),
            result=None if result is None else orjson.loads(result),
            error=None if error is None else orjson.loads(error),
            cancel_requested=get("cancel_requested") == "1",
            idempotency_key=get("idempotency_key"),
            concurrency_key=get("concurrency_key"),
            tenant=h["tenant"],
            meta=orjson.loads(h["meta"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise BackendError(
            f"corrupt or foreign data under Redis key {where!r}: {type(exc).__name__}: {exc}; "
            "is another program writing under offload's prefix?"
        ) from None


#: What a compact history entry's time stands for when it is a number (retire() in prelude.lua).
_TIMES = {1: "started_at", 2: "finished_at"}


def ended_hash(job_id: str, raw: str) -> tuple[dict[str, str], list[list[Any]]]:
    """An ended job's record (a field of its bucket, written by retire() in prelude.lua) as
    the fields its hash had, and its compact history entries."""
    rec: list[Any] = orjson.loads(raw)
    h = {"id": job_id, **ENDED_DEFAULTS, "created_at": rec[0], "status": rec[2]}
    if isinstance(rec[1], str):
        h["queue"] = rec[1]
    for name, value in zip(ENDED_FIELDS, rec[5:], strict=False):
        if isinstance(value, str):
            h[name] = value
    if isinstance(rec[4], list):
        h.update(pairs(rec[4]))
    return h, rec[3]


def history_entries(job_id: str, h: dict[str, str], compact: list[list[Any]]) -> list[Transition]:
    """An ended job's history from its record: a time 1 or 2 is the job's started_at or
    finished_at, reason 0 the new status, worker 1 the job's worker_id; trailing falses are
    left out."""
    entries = []
    for item in compact:
        entry = [*item, *[False] * (8 - len(item))]
        if not isinstance(entry[0], str):
            entry[0] = h[_TIMES[entry[0]]]
        if entry[3] == 0:
            entry[3] = entry[2]
        if entry[6] == 1:
            entry[6] = h["worker_id"]
        entries.append(transition_from_entry(job_id, entry))
    return entries


def transition_from_json(job_id: str, raw: str) -> Transition:
    return transition_from_entry(job_id, orjson.loads(raw))


def transition_from_entry(job_id: str, entry: Sequence[Any]) -> Transition:
    at, before, after, reason, attempt, token, worker, detail = entry
    return Transition(
        job_id,
        float(at),
        State(before) if before else None,
        State(after),
        Reason(reason),
        int(attempt),
        int(token),
        worker or None,
        detail or None,
    )


def worker_to_json(worker: WorkerInfo) -> bytes:
    return orjson.dumps(
        {
            "id": worker.id,
            "name": worker.name,
            "host": worker.host,
            "pid": worker.pid,
            "queues": worker.queues,
            "concurrency": worker.concurrency,
            "started_at": worker.started_at,
            "running": worker.running,
            "processed": worker.processed,
        }
    )


def worker_from_json(raw: str, last_seen: str) -> WorkerInfo:
    data: dict[str, Any] = orjson.loads(raw)
    return WorkerInfo(last_seen=float(last_seen), **data)


def opt(value: str | None) -> str:
    """An optional string as a script argument: "" for None, else "=" + value."""
    return "" if value is None else "=" + value


Blobs = tuple[bytes, bytes, bytes]


def encode_group(jobs: Sequence[NewJob]) -> tuple[list[tuple[str, ...]], list[Blobs]]:
    """The SUBMIT machinery's rows for one call's jobs (ValueError or SerializationError when
    a job cannot be stored)."""
    rows: list[tuple[str, ...]] = []
    blobs_of_group = []
    for job in jobs:
        check_new_job(job)
        blobs = (dumps(job.args), dumps(job.kwargs), dumps(job.meta))
        blobs_of_group.append(blobs)
        rows.append(
            (
                job.id,
                job.task,
                job.queue,
                str(int(job.priority)),
                repr(float(job.delay)),
                "" if job.run_at is None else "=" + repr(float(job.run_at)),
                opt(job.idempotency_key),
                job.fingerprint or "",
                opt(job.concurrency_key),
                job.tenant,
                blobs[0].decode(),
                blobs[1].decode(),
                blobs[2].decode(),
                "" if job.result_ttl is None else "=" + repr(float(job.result_ttl)),
                *limit_fields(job.limits),
            )
        )
    return rows, blobs_of_group


def move_error(op: tuple[Any, ...], reply: str) -> BaseException | None:
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


def limit_fields(limits: Limits | None) -> tuple[str, str, str, str]:
    """A job's limits as four optional script strings: cap, key_cap, rate, key_rate."""
    if limits is None:
        return ("", "", "", "")
    return (
        "" if limits.concurrency is None else f"={limits.concurrency}",
        "" if limits.key_concurrency is None else f"={limits.key_concurrency}",
        "" if limits.rate is None else "=" + repr(limits.rate),
        "" if limits.key_rate is None else "=" + repr(limits.key_rate),
    )


def submitted(
    root: str, jobs: list[NewJob], blobs_of_group: list[Blobs], group: Sequence[Any], now: float
) -> list[JobRecord] | BaseException:
    """The records (or the error) one submit call gets from its group of a SUBMIT reply."""
    if group[0] == "conflict":
        return IdempotencyConflict(group[1], group[2])
    if group[0] == "invalid":
        return ValueError(group[1])
    records = []
    for job, blobs, item in zip(jobs, blobs_of_group, group[1:], strict=True):
        if item[0] == "old":
            records.append(job_from_flat(item[1:], root))
            continue
        records.append(
            JobRecord(
                id=job.id,
                task=job.task,
                queue=job.queue,
                status=State(item[1]),
                args=orjson.loads(blobs[0]),
                kwargs=orjson.loads(blobs[1]),
                priority=int(job.priority),
                attempts=0,
                losses=0,
                run_at=float(item[2]),
                created_at=now,
                updated_at=now,
                idempotency_key=job.idempotency_key,
                concurrency_key=job.concurrency_key,
                tenant=job.tenant,
                meta=orjson.loads(blobs[2]),
            )
        )
    return records
