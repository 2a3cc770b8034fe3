"""``HTTPClient`` and ``AsyncHTTPClient``: offload's HTTP API from Python, on httpx.

Each operation is written once, in :class:`_Plans`, as a *plan*: a generator that yields
steps (send this request, open this stream, read a line, sleep, hand an event to the caller)
and is sent each step's outcome. It builds requests, reads answers and maps errors, but does no
I/O. The two faces only run plans: :class:`HTTPClient` with a blocking ``httpx.Client``,
:class:`AsyncHTTPClient` with an ``httpx.AsyncClient``. A fix to an operation is a fix to both.

Errors answer as offload's own exceptions (the error table of :mod:`offload.api.errors`, read
backwards); an error the Python API has no class for (400, 401, 403, 413, 415, 429, 500) raises
:class:`APIError`, and a service that cannot be reached raises
:class:`~offload.errors.BackendUnavailable` naming the URL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import httpx
import orjson

from offload.api.errors import exception_for
from offload.core.states import TERMINAL_STATES
from offload.errors import BackendUnavailable, OffloadError, WaitTimeout

T = TypeVar("T")
JobDict = dict[str, Any]
Event = tuple[str, JobDict]

#: seconds between ``GET`` polls once a ``wait`` has lost its event stream
POLL_INTERVAL = 0.25
_TERMINAL = frozenset(s.value for s in TERMINAL_STATES)


class APIError(OffloadError):
    """The HTTP API refused a request that no other offload exception describes."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        self.status = status
        self.code = code
        self.details = details
        super().__init__(f"{status} {code}: {message}")


# -- steps: what a plan asks its runner to do -------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Open:
    """Open a streaming request; the runner answers with the response (body read if not 200)."""

    request: httpx.Request


@dataclass(frozen=True, slots=True)
class _Line:
    """Read the next line of the open stream; the runner answers with it, or None at its end.

    ``deadline`` (``time.monotonic()``) bounds the read where the runner can enforce it.
    """

    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class _Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class _Emit:
    """Hand one event to the caller of an iterating operation."""

    event: Event


_Step = httpx.Request | _Open | _Line | _Sleep | _Emit
Plan = Generator[_Step, Any, T]


# -- the operations, once ---------------------------------------------------------------------


class _Plans:
    """Builds requests and reads responses for one service; no I/O."""

    def __init__(self, base_url: str, token: str | None, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = {"Accept": "application/json"}
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        read_timeout: float | None = None,
    ) -> httpx.Request:
        timeout = httpx.Timeout(self.timeout, read=read_timeout or self.timeout)
        content = None if json is None else orjson.dumps(json)
        all_headers = {**self.headers, **(headers or {})}
        if content is not None or method != "GET":  # the API asks it of every POST
            all_headers["Content-Type"] = "application/json"
        return httpx.Request(
            method, self.base_url + path, content=content, headers=all_headers,
            extensions={"timeout": timeout.as_dict()},
        )  # fmt: skip

    def submit(
        self,
        task: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        queue: str | None,
        priority: int | None,
        delay: float | None,
        idempotency_key: str | None,
    ) -> Plan[JobDict]:
        body: dict[str, Any] = {"task": task, "args": list(args), "kwargs": kwargs}
        for name, value in (("queue", queue), ("priority", priority), ("delay", delay)):
            if value is not None:
                body[name] = value
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        response = yield self.request("POST", "/v1/jobs", json=body, headers=headers)
        return _job(response)

    def get(self, job_id: str) -> Plan[JobDict]:
        return _job((yield self.request("GET", f"/v1/jobs/{job_id}")))

    def cancel(self, job_id: str) -> Plan[JobDict]:
        return _job((yield self.request("POST", f"/v1/jobs/{job_id}/cancel")))

    def retry(self, job_id: str) -> Plan[JobDict]:
        return _job((yield self.request("POST", f"/v1/jobs/{job_id}/retry")))

    def events(self, job_id: str) -> Plan[None]:
        parser = yield from self._open_events(job_id, None)
        while (event := (yield from _next_event(parser, None))) is not None:
            yield _Emit(event)

    def wait(self, job_id: str, timeout: float | None) -> Plan[JobDict]:
        """Follow the event stream until the job ends; if it drops, poll until then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        job: JobDict | None = None
        try:
            parser = yield from self._open_events(job_id, deadline)
            while (event := (yield from _next_event(parser, deadline))) is not None:
                name, data = event
                if name == "error":  # the service could no longer read the job
                    break
                job = data
                if job["status"] in _TERMINAL:
                    break
        except (BackendUnavailable, TimeoutError):
            pass  # the stream dropped or timed out: fall back to polling (which checks time)
        while job is None or job.get("status") not in _TERMINAL:
            if deadline is not None and time.monotonic() >= deadline:
                status = job["status"] if job else "unknown"
                raise WaitTimeout(f"job {job_id} is still {status} after {timeout:g}s")
            if job is not None:
                yield _Sleep(_until(deadline, POLL_INTERVAL))
            job = yield from self.get(job_id)
        return job

    def _open_events(self, job_id: str, deadline: float | None) -> Plan[_SSEParser]:
        read = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        accept = {"Accept": "text/event-stream"}
        path = f"/v1/jobs/{job_id}/events"
        response = yield _Open(self.request("GET", path, headers=accept, read_timeout=read))
        if response.status_code != 200:
            raise _error_for(response)
        return _SSEParser()


def _until(deadline: float | None, most: float) -> float:
    return most if deadline is None else max(min(most, deadline - time.monotonic()), 0.0)


def _next_event(parser: _SSEParser, deadline: float | None) -> Plan[Event | None]:
    while (line := (yield _Line(deadline))) is not None:
        if (event := parser.feed(line)) is not None:
            return event
    return None


class _SSEParser:
    """Server-Sent Events, one line at a time: ``feed`` returns an event when one completes."""

    def __init__(self) -> None:
        self.name = "message"
        self.data: list[str] = []

    def feed(self, line: str) -> Event | None:
        if line == "":
            if not self.data:
                return None
            event = (self.name, orjson.loads("\n".join(self.data)))
            self.name, self.data = "message", []
            return event
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self.name = value
        elif field == "data":
            self.data.append(value)
        return None  # comments (empty field) and unknown fields are ignored


def _job(response: httpx.Response) -> JobDict:
    if not response.is_success:
        raise _error_for(response)
    job: JobDict = response.json()
    return job


def _error_for(response: httpx.Response) -> OffloadError:
    """The offload exception for an error answer ``{"error": {"code", "message", "details"}}``."""
    status = response.status_code
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
        details: dict[str, Any] = dict(error.get("details") or {})
    except (ValueError, KeyError, TypeError):
        code, message, details = "http_error", response.text[:200] or response.reason_phrase, {}
    if (known := exception_for(status, code, message, details)) is not None:
        return known
    if status == 503:
        return BackendUnavailable(f"the offload API at {response.url} is unavailable: {message}")
    return APIError(status, code, message, details)


def _unreachable(base_url: str, exc: httpx.TransportError) -> BackendUnavailable:
    kind = "did not answer in time" if isinstance(exc, httpx.TimeoutException) else "unreachable"
    return BackendUnavailable(f"the offload API at {base_url} is {kind}: {exc!r}")


# -- the two faces: they only run plans -------------------------------------------------------


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
        self._plans = _Plans(base_url, token, timeout)
        self._http = httpx.Client(transport=transport, timeout=timeout)

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
        return self._run(self._plans.submit(
            task, args, kwargs, queue=queue, priority=priority, delay=delay,
            idempotency_key=idempotency_key,
        ))  # fmt: skip

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

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _run(self, plan: Plan[T]) -> T:
        driver = _SyncDriver(self._http, self._plans.base_url, plan)
        for _ in driver:
            pass
        return cast(T, driver.result)

    def _iterate(self, plan: Plan[None]) -> Iterator[Event]:
        yield from _SyncDriver(self._http, self._plans.base_url, plan)


class _SyncDriver:
    """Runs one plan with a blocking client; iterating it yields the plan's emitted events."""

    def __init__(self, http: httpx.Client, base_url: str, plan: Plan[Any]) -> None:
        self.http, self.base_url, self.plan = http, base_url, plan
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
                    if isinstance(step, _Emit):
                        yield step.event
                    elif isinstance(step, httpx.Request):
                        reply = self.http.send(step)
                    elif isinstance(step, _Open):
                        if stream is not None:
                            stream.close()
                        stream = reply = self.http.send(step.request, stream=True)
                        if stream.status_code != 200:
                            stream.read()
                        lines = stream.iter_lines()
                    elif isinstance(step, _Line):
                        assert lines is not None
                        reply = next(lines, None)
                    else:
                        time.sleep(step.seconds)
                except httpx.TransportError as exc:
                    error = _unreachable(self.base_url, exc)
        finally:
            if stream is not None:
                stream.close()
            self.plan.close()


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
        self._plans = _Plans(base_url, token, timeout)
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout)

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
        return await self._run(self._plans.submit(
            task, args, kwargs, queue=queue, priority=priority, delay=delay,
            idempotency_key=idempotency_key,
        ))  # fmt: skip

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
        return _AsyncDriver(self._http, self._plans.base_url, self._plans.events(job_id)).events()

    async def aclose(self) -> None:
        await self._http.aclose()

    close = aclose

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _run(self, plan: Plan[T]) -> T:
        driver = _AsyncDriver(self._http, self._plans.base_url, plan)
        async for _ in driver.events():
            pass
        return cast(T, driver.result)


class _AsyncDriver:
    """Runs one plan with an async client; ``events()`` yields the plan's emitted events."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, plan: Plan[Any]) -> None:
        self.http, self.base_url, self.plan = http, base_url, plan
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
                    if isinstance(step, _Emit):
                        yield step.event
                    elif isinstance(step, httpx.Request):
                        reply = await self.http.send(step)
                    elif isinstance(step, _Open):
                        if stream is not None:
                            await stream.aclose()
                        stream = reply = await self.http.send(step.request, stream=True)
                        if stream.status_code != 200:
                            await stream.aread()
                        lines = stream.aiter_lines()
                    elif isinstance(step, _Line):
                        assert lines is not None
                        reply = await _next_line(lines, step.deadline)
                    else:
                        await asyncio.sleep(step.seconds)
                except httpx.TransportError as exc:
                    error = _unreachable(self.base_url, exc)
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
