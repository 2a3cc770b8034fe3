"""``AsyncHTTPClient``: offload's HTTP API over aiohttp if installed, else an
``httpx.AsyncClient`` (which keeps event streams and big bodies); it only runs plans."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, cast

import httpx

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

if TYPE_CHECKING:
    from offload.http_client.aiohttp_ import AiohttpPool

Fetch = Callable[[Call], Awaitable[Answer]]


class AsyncHTTPClient:
    """The asyncio face of :class:`HTTPClient`: the same operations, awaited."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._plans = Plans(base_url, token, timeout)
        self._aio = _aiohttp_pool() if transport is None else None
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout, limits=LIMITS)

    async def submit(
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
        return await self._run(
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

    async def get(self, job_id: str) -> JobDict:
        """The job as it is now. :raises JobNotFound:"""
        return await self._run(self._plans.get(job_id))

    async def cancel(self, job_id: str) -> JobDict:
        """Cancel a waiting job, or ask a running one to stop. :raises InvalidTransition:"""
        return await self._run(self._plans.cancel(job_id))

    async def retry(self, job_id: str) -> JobDict:
        """Run a failed or cancelled job again; returns the new job."""
        return await self._run(self._plans.retry(job_id))

    async def wait(self, job_id: str, timeout: float | None = None) -> JobDict:
        """The job once it has ended (check its ``status``). :raises WaitTimeout:"""
        return await self._run(self._plans.wait(job_id, timeout))

    def events(self, job_id: str) -> AsyncGenerator[Event, None]:
        """``(event, job)`` pairs from the job's event stream until the job ends.

        Leaving the loop early: close it (``contextlib.aclosing``) to drop the stream at once.
        """
        return _AsyncDriver(
            self._http, self._fetch, self._plans.base_url, self._plans.events(job_id)
        ).events()

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._aio is not None:
            await self._aio.aclose()

    close = aclose

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _fetch(self, call: Call) -> Answer:
        """A plain request: through aiohttp if installed (and the body small), else httpx."""
        if self._aio is not None and fits(call):
            return await self._aio.fetch(call)
        return await self._http.send(call.to_httpx())

    async def _run(self, plan: Plan[T]) -> T:
        driver = _AsyncDriver(self._http, self._fetch, self._plans.base_url, plan)
        async for _ in driver.events():
            pass
        return cast(T, driver.result)


def _aiohttp_pool() -> AiohttpPool | None:
    """aiohttp's pool when aiohttp is installed (``offload[client]``), else None."""
    try:
        from offload.http_client.aiohttp_ import AiohttpPool
    except ImportError:
        return None
    return AiohttpPool()


class _AsyncDriver:
    """Runs one plan with an async client; ``events()`` yields the plan's emitted events."""

    def __init__(
        self, http: httpx.AsyncClient, fetch: Fetch, base_url: str, plan: Plan[Any]
    ) -> None:
        self.http, self.fetch, self.base_url, self.plan = http, fetch, base_url, plan
        self.result: Any = None

    async def events(self) -> AsyncGenerator[Event, None]:
        stream: httpx.Response | None = None
        lines: AsyncIterator[str] | None = None
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
                        reply = await self.fetch(step)
                    elif isinstance(step, Open):
                        if stream is not None:
                            await stream.aclose()
                        stream = reply = await self.http.send(step.call.to_httpx(), stream=True)
                        if stream.status_code != 200:
                            await stream.aread()
                        lines = stream.aiter_lines()
                    elif isinstance(step, Line):
                        assert lines is not None
                        reply = await _next_line(lines, step.deadline)
                    else:
                        await asyncio.sleep(step.seconds)
                except httpx.TransportError as exc:
                    error = unreachable(self.base_url, exc)
                except TimeoutError as exc:
                    error = exc
        finally:
            if stream is not None:
                await stream.aclose()
            self.plan.close()


async def _next_line(lines: AsyncIterator[str], deadline: float | None) -> str | None:
    if deadline is None:
        return await anext(lines, None)
    async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
        return await anext(lines, None)
