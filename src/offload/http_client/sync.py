"""``HTTPClient``: offload's HTTP API over aiohttp on a private loop thread if installed, else
a blocking ``httpx.Client`` (which keeps event streams and big bodies); it only runs plans."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, cast

import httpx

if TYPE_CHECKING:
    from offload.http_client.aiohttp_ import AiohttpPool

from offload._portal import Portal
from offload.http_client.plans import (
    LIMITS,
    Answer,
    Call,
    Emit,
    Event,
    JobDict,
    Line,
    Open,
    Plan,
    Plans,
    T,
    fits,
    unreachable,
)

Fetch = Callable[[Call], Answer]


class HTTPClient:
    """A blocking client of offload's HTTP API (``offload serve`` / ``offload up``).

    ``token`` is sent as ``Authorization: Bearer``; ``timeout`` bounds each request in
    seconds. Use as a context manager or call :meth:`close`. ``transport`` is for tests.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._plans = Plans(base_url, token, timeout)
        self._http = httpx.Client(transport=transport, timeout=timeout, limits=LIMITS)
        self._aio: _AiohttpOnALoop | None = None
        if transport is None:
            with contextlib.suppress(ImportError):
                self._aio = _AiohttpOnALoop()

    def submit(
        self,
        task: str,
        *args: Any,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | None = None,
        idempotency_key: str | None = None,
        **kwargs: Any,
    ) -> JobDict:
        """Submit a job of ``task``; returns the stored job (``status`` queued or scheduled)."""
        return self._run(
            self._plans.submit(
                task,
                args,
                kwargs,
                queue=queue,
                priority=priority,
                delay=delay,
                idempotency_key=idempotency_key,
            )
        )

    def get(self, job_id: str) -> JobDict:
        """The job as it is now. :raises JobNotFound:"""
        return self._run(self._plans.get(job_id))

    def cancel(self, job_id: str) -> JobDict:
        """Cancel a waiting job, or ask a running one to stop. :raises InvalidTransition:"""
        return self._run(self._plans.cancel(job_id))

    def retry(self, job_id: str) -> JobDict:
        """Run a failed or cancelled job again; returns the new job."""
        return self._run(self._plans.retry(job_id))

    def wait(self, job_id: str, timeout: float | None = None) -> JobDict:
        """The job once it has ended (check its ``status``). :raises WaitTimeout:"""
        return self._run(self._plans.wait(job_id, timeout))

    def events(self, job_id: str) -> Iterator[Event]:
        """``(event, job)`` pairs from the job's event stream until the job ends."""
        return self._iterate(self._plans.events(job_id))

    def close(self) -> None:
        self._http.close()
        if self._aio is not None:
            self._aio.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _fetch(self, call: Call) -> Answer:
        """A plain request: through aiohttp if installed (and the body small), else httpx."""
        if self._aio is not None and fits(call):
            return self._aio.fetch(call)
        return self._http.send(call.to_httpx())

    def _run(self, plan: Plan[T]) -> T:
        driver = _SyncDriver(self._http, self._fetch, self._plans.base_url, plan)
        for _ in driver:
            pass
        return cast(T, driver.result)

    def _iterate(self, plan: Plan[None]) -> Iterator[Event]:
        yield from _SyncDriver(self._http, self._fetch, self._plans.base_url, plan)


class _AiohttpOnALoop:
    """aiohttp's pool on a private event loop thread (offload's portal), for ``HTTPClient``'s
    plain requests when aiohttp is installed: calling threads only wait for their answer, so
    hundreds of them share one pool without contending for httpcore's lock and the GIL
    (measured in benchmarks/http_clients.py). Streams keep the blocking ``httpx.Client``."""

    def __init__(self) -> None:
        from offload.http_client.aiohttp_ import AiohttpPool

        self._make = AiohttpPool
        self._lock = threading.Lock()
        self._started: tuple[Portal, AiohttpPool] | None = None

    def fetch(self, call: Call) -> Answer:
        started = self._started
        if started is None or started[0].pid != os.getpid():  # none yet, or forked since
            started = self._start()
        portal, pool = started
        return portal.call(pool.fetch(call))

    def _start(self) -> tuple[Portal, AiohttpPool]:
        with self._lock:
            if self._started is None or self._started[0].pid != os.getpid():
                self._started = (Portal("offload-http-client"), self._make())
            return self._started

    def close(self) -> None:
        with self._lock:
            started, self._started = self._started, None
        if started is not None and started[0].pid == os.getpid():
            portal, pool = started
            portal.call(pool.aclose())
            portal.close()


class _SyncDriver:
    """Runs one plan with a blocking client; iterating it yields the plan's emitted events."""

    def __init__(self, http: httpx.Client, fetch: Fetch, base_url: str, plan: Plan[Any]) -> None:
        self.http, self.fetch, self.base_url, self.plan = http, fetch, base_url, plan
        self.result: Any = None

    def __iter__(self) -> Iterator[Event]:
        stream: httpx.Response | None = None
        lines: Iterator[str] | None = None
        try:
            reply: Any = None
            error: BaseException | None = None
            while True:
                try:
                    step = self.plan.throw(error) if error else self.plan.send(reply)
                except StopIteration as stop:
                    self.result = stop.value
                    return
                reply, error = None, None
                try:
                    if isinstance(step, Emit):
                        yield step.event
                    elif isinstance(step, Call):
                        reply = self.fetch(step)
                    elif isinstance(step, Open):
                        if stream is not None:
                            stream.close()
                        stream = reply = self.http.send(step.call.to_httpx(), stream=True)
                        if stream.status_code != 200:
                            stream.read()
                        lines = stream.iter_lines()
                    elif isinstance(step, Line):
                        assert lines is not None
                        reply = next(lines, None)
                    else:
                        time.sleep(step.seconds)
                except httpx.TransportError as exc:
                    error = unreachable(self.base_url, exc)
        finally:
            if stream is not None:
                stream.close()
            self.plan.close()
