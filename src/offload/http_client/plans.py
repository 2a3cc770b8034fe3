"""The operations of offload's HTTP API, each written once as a *plan*, and the steps a plan
asks its runner to take (see :mod:`offload.http_client`). Plans build requests, read answers
and map errors; they do no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

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
#: httpx's pool: as many connections kept alive as may be open (httpx keeps 20 of 100 by
#: default, so 50 concurrent callers closed and reopened 30 connections per round)
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100)
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
class Call:
    """Send one request; the runner answers with the whole response (an :class:`Answer`).

    A plain record, not an ``httpx.Request``: building one of those (URL parsing, header
    normalising) cost ~130 µs, a third of a submit's client CPU when aiohttp carries it.
    """

    method: str
    url: str
    headers: dict[str, str]
    content: bytes | None
    timeout: float  # connect, write and pool
    read_timeout: float

    def to_httpx(self) -> httpx.Request:
        timeout = httpx.Timeout(self.timeout, read=self.read_timeout)
        return httpx.Request(
            self.method,
            self.url,
            content=self.content,
            headers=self.headers,
            extensions={"timeout": timeout.as_dict()},
        )


#: bodies from this size on go through httpx even where aiohttp is used (see ``aiohttp_.py``)
SMALL = 64 * 1024


def fits(call: Call) -> bool:
    """Whether aiohttp may carry ``call``: its body, if any, is small."""
    return call.content is None or len(call.content) < SMALL


class Answer(Protocol):
    """What plans read of a response: ``httpx.Response`` is one."""

    @property
    def status_code(self) -> int: ...
    @property
    def is_success(self) -> bool: ...
    @property
    def text(self) -> str: ...
    @property
    def reason_phrase(self) -> str: ...
    @property
    def url(self) -> Any: ...
    def json(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class Open:
    """Open a streaming request; the runner answers with the response (body read if not 200)."""

    call: Call


@dataclass(frozen=True, slots=True)
class Line:
    """Read the next line of the open stream; the runner answers with it, or None at its end.

    ``deadline`` (``time.monotonic()``) bounds the read where the runner can enforce it.
    """

    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Emit:
    """Hand one event to the caller of an iterating operation."""

    event: Event


Step = Call | Open | Line | Sleep | Emit
Plan = Generator[Step, Any, T]


# -- the operations, once ---------------------------------------------------------------------


class Plans:
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
    ) -> Call:
        content = None if json is None else orjson.dumps(json)
        all_headers = {**self.headers, **(headers or {})}
        if content is not None or method != "GET":  # the API asks it of every POST
            all_headers["Content-Type"] = "application/json"
        read = read_timeout or self.timeout
        return Call(method, self.base_url + path, all_headers, content, self.timeout, read)

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
            yield Emit(event)

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
                yield Sleep(_until(deadline, POLL_INTERVAL))
            job = yield from self.get(job_id)
        return job

    def _open_events(self, job_id: str, deadline: float | None) -> Plan[_SSEParser]:
        read = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        accept = {"Accept": "text/event-stream"}
        path = f"/v1/jobs/{job_id}/events"
        response = yield Open(self.request("GET", path, headers=accept, read_timeout=read))
        if response.status_code != 200:
            raise _error_for(response)
        return _SSEParser()


def _until(deadline: float | None, most: float) -> float:
    return most if deadline is None else max(min(most, deadline - time.monotonic()), 0.0)


def _next_event(parser: _SSEParser, deadline: float | None) -> Plan[Event | None]:
    while (line := (yield Line(deadline))) is not None:
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


def _job(response: Answer) -> JobDict:
    if not response.is_success:
        raise _error_for(response)
    job: JobDict = response.json()
    return job


def _error_for(response: Answer) -> OffloadError:
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


def unreachable(base_url: str, exc: httpx.TransportError) -> BackendUnavailable:
    kind = "did not answer in time" if isinstance(exc, httpx.TimeoutException) else "unreachable"
    return BackendUnavailable(f"the offload API at {base_url} is {kind}: {exc!r}")
