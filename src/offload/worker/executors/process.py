"""The process executor: CPU-bound tasks run in a pool of child processes (no GIL contention).

Children are started with ``forkserver`` (or ``spawn``), load the user's app once and run one
job at a time (``_child.py`` describes the protocol). They run at a lower CPU priority than the
worker (``nice``, 10 by default): CPU-bound jobs use whatever CPU is free, but give way to the
worker's own event loop and to an API on the same machine, which must keep answering within
milliseconds while every core crunches. Jobs and results cross the pipe as JSON
bytes only; multiprocessing pickles nothing but its own bootstrap (the entry function and the
pipe end). The parent reads pipes with ``loop.add_reader``, so its event loop never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from offload import errors
from offload.core.codec import dumps, loads
from offload.core.task import TaskSpec
from offload.worker.context import JobContext
from offload.worker.executors import _child
from offload.worker.executors.base import ChildError

__all__ = ["ProcessExecutor"]

Message = dict[str, Any]
POLL_INTERVAL = 0.05  # how often a waiting job looks at ctx.cancel_event (a threading.Event)
#: How much lower than the worker's the children's CPU priority is (``os.nice`` increment).
CHILD_NICE = 10
_OUTCOMES = frozenset({"result", "retry", "cancelled", "unserializable", "error"})


class ProcessExecutor:
    """Run task functions in ``size`` child processes, one job per child at a time.

    ``run`` waits (without a busy loop) while every child is busy. A child that is killed or
    dies is replaced by a fresh one, so the pool keeps ``size`` children until ``close``. Use
    it from one event loop: the one that ran ``start``.

    Each child adds ``nice`` (0 to 19) to its niceness when it starts, so it runs at a lower CPU
    priority than the worker that started it; commands its jobs start inherit that priority.
    ``setup`` (``module:function``) is called in each child before it imports ``app_path``:
    ``"django:setup"`` for an app whose modules need Django's apps loaded.
    """

    def __init__(
        self,
        app_path: str,
        size: int,
        *,
        start_method: str = "forkserver",
        kill_grace: float = 2.0,
        nice: int = CHILD_NICE,
        setup: str | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("a process pool needs size >= 1")
        if start_method not in ("forkserver", "spawn"):
            raise ValueError("start_method must be 'forkserver' or 'spawn' (fork is unsafe here)")
        if kill_grace < 0:
            raise ValueError("kill_grace must be >= 0 seconds")
        if not 0 <= nice <= 19:
            raise ValueError("nice must be between 0 (the worker's priority) and 19 (the lowest)")
        self.app_path, self.size, self.kill_grace, self.nice = app_path, size, kill_grace, nice
        self.setup = setup
        spawn = start_method == "spawn"
        self._mp = mp.get_context("spawn") if spawn else mp.get_context("forkserver")
        self._children: set[_Child] = set()
        self._idle: asyncio.Queue[_Child] = asyncio.Queue()
        self._state = "new"  # -> "running" -> "closed"

    @property
    def pids(self) -> list[int]:
        """The pids of the current children."""
        return sorted(child.pid for child in self._children)

    async def start(self) -> None:
        """Start the children and wait until each one has loaded the app.

        :raises ConfigurationError: a child could not load the app (the pool is closed again).
        """
        if self._state != "new":
            raise errors.OffloadError("a process executor can be started only once")
        launched = await asyncio.gather(
            *(asyncio.to_thread(self._launch) for _ in range(self.size))
        )
        children = [self._adopt(*parts, idle=False) for parts in launched]
        try:
            for child in children:
                await child.until_ready(None)
                self._idle.put_nowait(child)
        except ChildError as exc:
            await self.close()
            raise errors.ConfigurationError(f"cannot load app {self.app_path!r}: {exc}") from None
        self._state = "running"

    async def close(self, grace: float | None = None) -> None:
        """Stop every child: close its pipe, SIGTERM it if it is busy, SIGKILL it after ``grace``
        seconds (default ``kill_grace``). A ``run`` in progress raises ChildError "ChildDied";
        later calls raise OffloadError."""
        self._state = "closed"
        grace = self.kill_grace if grace is None else grace
        children, self._children = self._children, set()
        await asyncio.gather(*(child.stop(grace) for child in children))

    async def run(
        self,
        spec: TaskSpec,
        ctx: JobContext,
        args: list[Any],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Any:
        """Run ``spec`` with JSON ``args``/``kwargs`` in a child and return its JSON result.

        Progress the task reports is forwarded to ``ctx.progress``. ``timeout`` counts from the
        moment a ready child gets the job (waiting for a free child does not count).

        Timeout and cancellation kill the child (SIGTERM, on which it SIGKILLs the job's process
        groups; SIGKILL after ``kill_grace``) and the pool starts a replacement:

        - ``timeout`` elapsed: raises JobTimeout once the child is dead.
        - ``ctx.cancel_event`` set (checked every 50 ms, also while waiting for a child):
          raises Cancelled once the child is dead.
        - the awaiting asyncio task cancelled: CancelledError propagates once the child is dead
          (a second cancel during that wait SIGKILLs it at once).

        :raises ChildError: the task raised (``.info`` holds its error), or the child died.
        :raises Retry: the task raised ``offload.Retry`` (same ``delay`` and ``reason``).
        :raises Cancelled: the task raised ``offload.Cancelled``, or the job was cancelled.
        :raises SerializationError: the task returned a value that is not JSON.
        :raises InvalidArguments: the arguments do not fit the task (checked before any child).
        """
        spec.decode_arguments(args, kwargs)  # the child decodes them again, for real
        request = dumps(
            {
                "type": "run",
                "id": ctx.id,
                "task": spec.name,
                "attempt": ctx.attempt,
                "queue": ctx.queue,
                "args": args,
                "kwargs": kwargs,
            }
        )
        child = await self._acquire(ctx)
        try:
            await child.until_ready(ctx)
            outcome = await child.exchange(ctx, request, timeout)
        except BaseException:
            try:
                await self._replace(child)
            finally:  # a child killed with SIGKILL could not stop its commands itself
                ctx.kill_process_groups()
            raise
        child.busy = False
        self._idle.put_nowait(child)
        return _unwrap(outcome)

    def _launch(self) -> tuple[BaseProcess, Connection[Any, Any], Connection[Any, Any]]:
        parent_end, child_end = self._mp.Pipe()
        # The child reads EOF from its lifeline once the worker is gone, however it went.
        lifeline_end, keep_alive = self._mp.Pipe(duplex=False)
        process = self._mp.Process(
            target=_child.main,
            args=(child_end, self.app_path, self.nice, lifeline_end, self.setup),
            daemon=True,
            name="offload-child",
        )
        process.start()
        child_end.close()
        lifeline_end.close()
        return process, parent_end, keep_alive

    def _adopt(
        self,
        process: BaseProcess,
        conn: Connection[Any, Any],
        keep_alive: Connection[Any, Any],
        *,
        idle: bool,
    ) -> _Child:
        child = _Child(process, conn, keep_alive)
        self._children.add(child)
        if idle:
            self._idle.put_nowait(child)
        return child

    async def _acquire(self, ctx: JobContext) -> _Child:
        while True:
            if self._state != "running":
                closed = self._state == "closed"
                raise errors.OffloadError(
                    "the process executor is closed" if closed else "call start() before run()"
                )
            if ctx.cancelled:
                raise errors.Cancelled(f"job {ctx.id} was cancelled before it started")
            try:
                async with asyncio.timeout(POLL_INTERVAL):
                    child = await self._idle.get()
            except TimeoutError:
                continue
            child.busy = True
            if not child.gone:
                return child
            await self._replace(child)  # it died while idle

    async def _replace(self, child: _Child) -> None:
        if child not in self._children:
            return  # close() is stopping it
        self._children.discard(child)
        try:
            await child.stop(self.kill_grace)
        finally:
            if self._state == "running":
                # Starting a process only forks (or asks the fork server to): milliseconds.
                self._adopt(*self._launch(), idle=True)


class _Child:
    """One child process as the parent sees it: its pipe and the messages read from it."""

    def __init__(
        self, process: BaseProcess, conn: Connection[Any, Any], keep_alive: Connection[Any, Any]
    ) -> None:
        self.process, self.conn, self.pid = process, conn, process.pid or 0
        self.keep_alive = keep_alive  # never written: closing it (or dying) ends the child
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.ready = self.busy = self.gone = self.stopping = False
        asyncio.get_running_loop().add_reader(conn.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        try:
            self.inbox.put_nowait(loads(self.conn.recv_bytes()))
        except (EOFError, OSError):
            self.detach()

    def detach(self) -> None:
        """Stop reading the pipe and tell whoever waits on the inbox that the child is gone."""
        if not self.gone:
            self.gone = True
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            self.inbox.put_nowait({"type": "eof"})

    async def until_ready(self, ctx: JobContext | None) -> None:
        while not self.ready:
            message = await self.receive(ctx, None)
            if message["type"] == "fatal":
                raise ChildError(message["error"])
            if message["type"] == "eof":
                raise await self.died()
            self.ready = message["type"] == "ready"

    async def exchange(self, ctx: JobContext, request: bytes, timeout: float | None) -> Message:
        try:  # the child is idle and reading, so a full pipe drains at once
            self.conn.send_bytes(request)
        except OSError:
            raise await self.died() from None
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        while True:
            try:
                message = await self.receive(ctx, deadline)
            except TimeoutError:
                raise errors.JobTimeout(
                    f"job {ctx.id} ran longer than its {timeout:g}s timeout; its process was killed"
                ) from None
            kind = message["type"]
            if kind == "eof":
                raise await self.died()
            if kind == "progress" and message["id"] == ctx.id:
                ctx.progress(message["fraction"], message["message"])
            elif kind == "group" and message["id"] == ctx.id:
                if message["live"]:
                    ctx.add_process_group(message["pgid"])
                else:
                    ctx.discard_process_group(message["pgid"])
            elif kind in _OUTCOMES:
                return message

    async def receive(self, ctx: JobContext | None, deadline: float | None) -> Message:
        """The next message; raises TimeoutError past ``deadline`` and Cancelled on cancel."""
        loop = asyncio.get_running_loop()
        while True:
            if ctx is not None and ctx.cancelled:
                raise errors.Cancelled(f"job {ctx.id} was cancelled; its process was killed")
            wait = POLL_INTERVAL if deadline is None else min(POLL_INTERVAL, deadline - loop.time())
            if wait <= 0:
                raise TimeoutError
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    return await self.inbox.get()

    async def died(self) -> ChildError:
        if self.stopping:
            message = f"child process {self.pid} was stopped by close() during the job"
        else:
            await _wait_exit(self.process, 1.0)  # the pipe closed, so the exit is under way
            message = f"child process {self.pid} exited with code {self.process.exitcode}"
        return ChildError({"type": "ChildDied", "message": message, "traceback": ""})

    async def stop(self, grace: float) -> None:
        """Close the pipe (an idle child exits by itself), SIGTERM a busy one, SIGKILL late."""
        self.stopping = True
        self.detach()
        self.conn.close()
        process = self.process
        if process.exitcode is None and (self.busy or not self.ready):
            process.terminate()
        try:
            if not await _wait_exit(process, grace):
                process.kill()
                await _wait_exit(process, 5.0)
        finally:
            if process.exitcode is None:  # a second cancel interrupted the wait
                process.kill()
                process.join(timeout=1.0)
            self.keep_alive.close()  # after the exit: an idle child leaves cleanly on its own
            with contextlib.suppress(ValueError):  # still running: leave it to the finalizer
                process.close()


async def _wait_exit(process: BaseProcess, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``process`` to exit, without blocking the loop."""
    if process.exitcode is not None:
        return True
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()
    loop.add_reader(process.sentinel, _resolve, exited)
    try:
        async with asyncio.timeout(timeout):
            await exited
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(process.sentinel)
    process.join(timeout=1.0)  # the sentinel fired: this only collects the exit code
    return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _unwrap(outcome: Message) -> Any:
    kind = outcome["type"]
    if kind == "result":
        return outcome["value"]
    if kind == "retry":
        raise errors.Retry(delay=outcome["delay"], reason=outcome["reason"])
    if kind == "cancelled":
        raise errors.Cancelled(outcome["message"])
    if kind == "unserializable":
        raise errors.SerializationError(outcome["message"])
    raise ChildError(outcome["error"])
