"""Event-loop watchdog: notice when an asyncio loop stops answering, and say where it was stuck.

::

    from offload.integrations.watchdog import install, WatchdogMiddleware

    watchdog = install(threshold_ms=100)       # from code running on the loop
    ...
    watchdog.uninstall()                       # or: with install(...): ...

    app.add_middleware(WatchdogMiddleware, threshold_ms=100)   # ASGI: also names the endpoint

How it works: a heartbeat callback on the loop writes the time every ``threshold / 2``; a daemon
monitor thread looks at it just after it would be older than the threshold. When it is, the
monitor samples the loop thread's stack once (``sys._current_frames()``), then looks every
``threshold / 4``. When the heartbeat moves again the block is over, and the monitor logs one
warning on the ``offload.watchdog`` logger with the duration, the innermost frames of the code
that blocked and the request that was running, and counts the block in Prometheus
(``offload_event_loop_blocks_total``, ``offload_event_loop_block_seconds``) when
prometheus-client is installed.

The duration is the time the loop did not answer: from its last heartbeat before the block to
its first one after, so it can exceed the real block by up to one heartbeat interval. A block
shorter than the threshold plus a tenth of it may go unnoticed. A loop that never comes back is
reported only if it does.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any

from offload.errors import ConfigurationError
from offload.integrations.metrics import BlockMetrics
from offload.integrations.stacks import (
    Scope,
    endpoint_of,
    format_frames,
    in_the_loop,
    innermost_user_frames,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

LOGGER = "offload.watchdog"
_NO_CALLBACK = (
    "\n  (the loop was between callbacks when sampled: the process was probably starved of CPU, "
    "or the time went to C code of the loop or to many short callbacks)"
)

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Block:
    """One time the loop did not answer for longer than the threshold."""

    seconds: float
    endpoint: str | None  # "GET /items/{item_id}", None outside any request
    stack: tuple[traceback.FrameSummary, ...]  # innermost frames of the code that blocked


class Watchdog:
    """Watches one event loop; see the module docstring. Build it with :func:`install`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        threshold_ms: float = 100,
        registry: CollectorRegistry | None = None,
        metrics: bool = True,
        stack_depth: int = 6,
        logger: logging.Logger | None = None,
    ) -> None:
        _check_threshold(threshold_ms)
        if loop.is_closed():
            raise ConfigurationError("cannot watch a closed event loop")
        self.loop = loop
        self.threshold = threshold_ms / 1000
        self.interval = self.threshold / 2  # heartbeat
        self.poll = self.threshold / 4  # monitor, while the loop is stuck or not running
        self.margin = self.threshold / 10  # monitor, past the threshold, while it is healthy
        self.stack_depth = stack_depth
        self.logger = logger or logging.getLogger(LOGGER)
        self.blocks = 0
        self.last_block: Block | None = None
        # id(scope) -> scope of each request in flight. Written on the loop thread by
        # WatchdogMiddleware, read by the monitor thread while the loop is stuck.
        self.requests: dict[int, Scope] = {}
        self._metrics = BlockMetrics.create(registry) if metrics else None
        self._beat = 0.0  # monotonic time of the last heartbeat; 0 until the first
        self._loop_thread: int | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._monitor, name="offload-watchdog", daemon=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> Watchdog:
        self._thread.start()
        self.loop.call_soon_threadsafe(self._heartbeat)
        return self

    def uninstall(self) -> None:
        """Stop the heartbeat and the monitor thread (which it waits for); idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        handle, self._handle = self._handle, None
        if handle is not None and not self.loop.is_closed():
            if threading.get_ident() == self._loop_thread or not self.loop.is_running():
                handle.cancel()
            else:
                self.loop.call_soon_threadsafe(handle.cancel)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        if self._metrics is not None:
            self._metrics.unregister()

    def __enter__(self) -> Watchdog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.uninstall()

    # -- on the loop thread ----------------------------------------------------------------
    def _heartbeat(self) -> None:
        if self._stop.is_set():
            return
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._handle = self.loop.call_later(self.interval, self._heartbeat)

    # -- on the monitor thread -------------------------------------------------------------
    def _monitor(self) -> None:
        pending: tuple[float, Block] | None = None  # (heartbeat seen stuck, its sample)
        wait = self.poll
        while not self._stop.wait(wait):
            if self.loop.is_closed():
                return
            beat, running, now = self._beat, self.loop.is_running(), time.monotonic()
            if pending is not None:
                if beat != pending[0] and running:
                    self._report(pending[1], beat - pending[0])
                if beat != pending[0] or not running:
                    pending = None
            elif beat and running and now - beat > self.threshold:
                pending = (beat, self._sample())
            if pending is None and beat and running:
                # sleep until just after the heartbeat would be over the threshold: one wake-up
                # per heartbeat while the loop is healthy
                wait = max(beat + self.threshold - now, 0.0) + self.margin
            else:
                wait = self.poll  # waiting for the block to end, or for the loop to run

    def _sample(self) -> Block:
        frame = sys._current_frames().get(self._loop_thread or -1)
        if frame is None:
            return Block(0.0, None, ())  # seconds are filled in when the block ends
        try:
            stack = traceback.extract_stack(frame)
            endpoint = endpoint_of(frame, self.requests)
        finally:
            del frame  # a frame held here would keep the loop's locals alive
        return Block(0.0, endpoint, innermost_user_frames(stack, self.stack_depth))

    def _report(self, sample: Block, seconds: float) -> None:
        block = replace(sample, seconds=seconds)
        self.blocks += 1
        self.last_block = block
        if self._metrics is not None:
            self._metrics.observe(seconds)
        where = f"in {block.endpoint}" if block.endpoint else "outside any request"
        stack = format_frames(block.stack)
        if block.stack and in_the_loop(block.stack[-1]):
            stack += _NO_CALLBACK
        self.logger.warning(
            "event loop blocked for %.3f s (threshold %.3f s) %s; blocking stack, most recent "
            "call last:\n%s",
            seconds,
            self.threshold,
            where,
            stack,
            extra={
                "blocked_seconds": round(seconds, 6),
                "endpoint": block.endpoint,
                "stack": [f"{f.filename}:{f.lineno} in {f.name}" for f in block.stack],
            },
        )


def _check_threshold(threshold_ms: float) -> None:
    if not threshold_ms > 0:
        raise ConfigurationError(f"threshold_ms must be above 0, not {threshold_ms!r}")


def install(
    loop: asyncio.AbstractEventLoop | None = None,
    threshold_ms: float = 100,
    *,
    registry: CollectorRegistry | None = None,
    metrics: bool = True,
    stack_depth: int = 6,
    logger: logging.Logger | None = None,
) -> Watchdog:
    """Start watching ``loop`` (default: the running loop) and return the :class:`Watchdog`.

    ``registry``: the Prometheus registry to count blocks in (default: prometheus-client's
    global one); ``metrics=False`` counts nothing. ``stack_depth``: frames of user code logged.

    :raises ConfigurationError: no loop given and none running, a closed loop, a threshold of 0
        or less, or the metrics already registered by another watchdog in that registry.
    """
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError(
                "install() needs the loop to watch: call it on a running loop or pass loop="
            ) from None
    watchdog = Watchdog(
        loop,
        threshold_ms=threshold_ms,
        registry=registry,
        metrics=metrics,
        stack_depth=stack_depth,
        logger=logger,
    )
    return watchdog.start()


class WatchdogMiddleware:
    """ASGI middleware: installs a :class:`Watchdog` on the serving loop (at lifespan startup,
    or on the first request) and tells it which request runs, so a block names its endpoint.

    Per request it only records the scope in ``watchdog.requests`` (and removes it at the end):
    a dict the monitor thread can read, where a contextvar would be invisible to it. When the
    loop is stuck, the monitor looks for one of those scopes in the ``scope`` variables of the
    frames on the blocked stack (see :func:`offload.integrations.stacks.endpoint_of`).
    """

    def __init__(
        self,
        app: ASGIApp,
        threshold_ms: float = 100,
        *,
        registry: CollectorRegistry | None = None,
        metrics: bool = True,
        stack_depth: int = 6,
        logger: logging.Logger | None = None,
    ) -> None:
        _check_threshold(threshold_ms)
        self.app = app
        self.watchdog: Watchdog | None = None
        self._options: dict[str, Any] = {
            "threshold_ms": threshold_ms,
            "registry": registry,
            "metrics": metrics,
            "stack_depth": stack_depth,
            "logger": logger,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watchdog = self.watchdog or self._install()
        if scope["type"] == "lifespan":
            try:
                await self.app(scope, receive, send)
            finally:
                self.uninstall()
            return
        requests, key = watchdog.requests, id(scope)
        requests[key] = scope
        try:
            await self.app(scope, receive, send)
        finally:
            del requests[key]

    def uninstall(self) -> None:
        """Stop the watchdog (a later request installs a new one)."""
        watchdog, self.watchdog = self.watchdog, None
        if watchdog is not None:
            watchdog.uninstall()

    def _install(self) -> Watchdog:
        self.watchdog = install(**self._options)
        return self.watchdog
