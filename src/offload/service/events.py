"""Server-Sent Events that follow one job until it ends.

The stream (``text/event-stream``) carries, each with the whole job (as in ``GET
/v1/jobs/{id}``) as its JSON ``data``:

- ``snapshot``: once, on connect;
- ``progress``: when the job's progress fraction or message changed;
- ``status``: when the job's status changed (the last event, once the status is terminal);
- ``error``: the job could no longer be read (backend down, job gone); then the stream ends.

A comment line (``: keep-alive``) is sent when nothing else was for ``heartbeat`` seconds, so
proxies keep the connection open. The backend is polled every ``poll`` seconds: changes in
between are merged (a job that went queued -> running -> succeeded within one poll is seen
as one ``status`` event with status succeeded).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from offload.api.errors import error_body, translate
from offload.api.schemas import JobOut
from offload.core.job import JobRecord
from offload.errors import OffloadError

MEDIA_TYPE = "text/event-stream"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
KEEP_ALIVE = b": keep-alive\n\n"


def sse(event: str, data: bytes) -> bytes:
    """One event in the wire format (data is single-line JSON)."""
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def _job(record: JobRecord) -> bytes:
    return JobOut.of(record).model_dump_json().encode()


async def follow_job(
    first: JobRecord,
    load: Callable[[], Awaitable[JobRecord]],
    *,
    poll: float,
    heartbeat: float,
) -> AsyncIterator[bytes]:
    """Yield the events of one job, starting from the already-read ``first`` snapshot."""
    record = first
    yield sse("snapshot", _job(record))
    last_sent = time.monotonic()
    while not record.is_terminal:
        await asyncio.sleep(poll)
        try:
            current = await load()
        except OffloadError as exc:
            err = translate(exc, retry_after=1)
            yield sse("error", error_body(err.code, err.message, err.details))
            return
        if (current.progress, current.progress_message) != (
            record.progress,
            record.progress_message,
        ):
            yield sse("progress", _job(current))
            last_sent = time.monotonic()
        if current.status is not record.status:
            yield sse("status", _job(current))
            last_sent = time.monotonic()
        record = current
        if time.monotonic() - last_sent >= heartbeat:
            yield KEEP_ALIVE
            last_sent = time.monotonic()
