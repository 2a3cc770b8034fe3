"""External commands for job code: ``run_process`` (async) and ``run_process_sync`` (threads).

Both start ``argv`` directly, never through a shell, as the leader of a new session, so the command
and everything it spawns share one process group. When a call ends before the command does (its
``timeout`` passes, the job is cancelled, or any other exception interrupts the wait) the whole
group is stopped: SIGTERM to the group, up to ``kill_grace`` seconds for the command to exit, then
SIGKILL to whatever is left of the group. The command is always reaped before the call returns or
raises. On Linux the command also gets SIGKILL when the worker dies without cleanup (``kill -9``,
the OOM killer): see ``offload.worker.lifeline``.

Inside a running job the group is registered on the job context from spawn until reaping, so a
worker that shuts down can kill groups that are still alive. stdout and stderr are read
concurrently and each keeps at most ``max_output`` bytes; the rest is read and discarded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import IO, Any

from offload.errors import Cancelled, ProcessError, ProcessTimeout
from offload.worker.context import JobContext, current_or_none
from offload.worker.lifeline import command_preexec

__all__ = ["ProcessResult", "run_process", "run_process_sync"]

Argv = Sequence[str | os.PathLike[str]]
DEFAULT_MAX_OUTPUT = 1_048_576
_CHUNK = 65_536
_POLL = 0.05  # how often run_process_sync looks at the job's cancel event
_DRAIN_AFTER_KILL = 1.0  # pipes close at once after SIGKILL unless a process escaped the group


@dataclass(frozen=True)
class ProcessResult:
    """A finished command: its exit status and output (each stream capped at ``max_output``)."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    truncated: bool  # True when stdout or stderr was longer than max_output bytes


async def run_process(
    argv: Argv,
    *,
    timeout: float | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | str | None = None,
    max_output: int = DEFAULT_MAX_OUTPUT,
    check: bool = True,
    kill_grace: float = 2.0,
) -> ProcessResult:
    """Run ``argv`` in its own process group and wait for it to exit and close its output.

    ``input`` (a str is encoded as UTF-8) is written to stdin, which is then closed; without it
    stdin is ``/dev/null``. ``env``, when given, is the command's whole environment. Output is
    decoded as UTF-8 with invalid bytes replaced.

    Timeout: ``timeout`` seconds bound the whole call. When they pass, the process group is
    stopped (see the module docstring) and :class:`~offload.errors.ProcessTimeout` is raised with
    the stderr read so far.

    Cancellation: if the awaiting task is cancelled, the process group is stopped the same way and
    ``asyncio.CancelledError`` is re-raised once the command is reaped. Further cancellations
    during that cleanup do not interrupt it.

    :raises TypeError: ``argv`` is a string rather than a list of arguments.
    :raises ValueError: ``argv`` is empty.
    :raises OSError: the command could not be started (for example ``FileNotFoundError``).
    :raises ProcessError: the command exited with a non-zero status and ``check`` is true.
    :raises ProcessTimeout: the command ran past ``timeout`` and was killed.
    """
    args, data = _argv_list(argv), _encode(input)
    out, err, scope = _Capped(max_output), _Capped(max_output), asyncio.timeout(timeout)
    ctx = current_or_none()
    with _announcer(ctx) as preexec:
        options = _spawn_options(data, cwd, env, preexec)
        proc = await asyncio.create_subprocess_exec(*args, **options)
    with _registered(ctx, proc.pid):
        try:
            async with scope:
                await _communicate(proc, data, out, err)
        except BaseException as exc:
            await _uninterrupted(_stop(proc, out, err, kill_grace))
            if isinstance(exc, TimeoutError) and timeout is not None and scope.expired():
                raise ProcessTimeout(args, timeout, err.text()) from None
            raise
    assert proc.returncode is not None  # _communicate waited for the exit
    return _result(args, proc.returncode, out, err, check=check)


def run_process_sync(
    argv: Argv,
    *,
    timeout: float | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | str | None = None,
    max_output: int = DEFAULT_MAX_OUTPUT,
    check: bool = True,
    kill_grace: float = 2.0,
) -> ProcessResult:
    """Blocking :func:`run_process`, for thread tasks and plain scripts; same arguments.

    Timeout: as for :func:`run_process`; the group is stopped and ``ProcessTimeout`` is raised.

    Cancellation: inside a job, the job's cancel event is checked before the command starts and
    every 50 ms while it runs. Once it is set, the process group is stopped (see the module
    docstring) and :class:`~offload.errors.Cancelled` is raised after the command is reaped.
    Outside a job there is nothing to cancel; an exception such as ``KeyboardInterrupt`` still
    stops the group before it propagates.

    :raises Cancelled: the job was cancelled; the command was killed or never started.
    :raises TypeError, ValueError, OSError, ProcessError, ProcessTimeout: as for ``run_process``.
    """
    args, data = _argv_list(argv), _encode(input)
    out, err, ctx = _Capped(max_output), _Capped(max_output), current_or_none()
    if ctx is not None:
        ctx.check_cancelled()
    with _announcer(ctx) as preexec:
        proc = subprocess.Popen(args, bufsize=0, **_spawn_options(data, cwd, env, preexec))
    deadline = None if timeout is None else time.monotonic() + timeout
    threads: list[threading.Thread] = []
    with _registered(ctx, proc.pid):
        try:
            threads += [
                _thread(_read_sync, proc.stdout, out),
                _thread(_read_sync, proc.stderr, err),
            ]
            if data is not None:
                threads.append(_thread(_write_sync, proc.stdin, data))
            stopped_by = _wait_sync(proc, threads, deadline, ctx)
        except BaseException:
            _stop_sync(proc, threads, kill_grace)
            raise
        if stopped_by is not None:
            _stop_sync(proc, threads, kill_grace)
    if stopped_by == "timeout":
        raise ProcessTimeout(args, timeout or 0.0, err.text())  # timeout is set when we get here
    if stopped_by == "cancel":
        raise Cancelled(f"job was cancelled; command {args[0]!r} was killed")
    return _result(args, proc.returncode, out, err, check=check)


# -- shared by both faces --------------------------------------------------------------------------
class _Capped:
    """Bytes from one stream: keeps the first ``limit`` bytes and notes whether more came."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"max_output must be >= 0, not {limit}")
        self._room = limit
        self._parts: list[bytes] = []
        self.truncated = False

    def feed(self, chunk: bytes) -> None:
        if len(chunk) > self._room:
            self.truncated = True
            chunk = chunk[: self._room]
        if chunk:
            self._parts.append(chunk)
            self._room -= len(chunk)

    def text(self) -> str:
        return b"".join(self._parts).decode("utf-8", errors="replace")


def _argv_list(argv: Argv) -> list[str]:
    if isinstance(argv, str | bytes):
        raise TypeError(
            f"argv must be a list such as ['ls', '-l'], not {type(argv).__name__}: "
            "pass a list of arguments; no shell is used"
        )
    args = [os.fspath(arg) for arg in argv]
    if not args:
        raise ValueError("argv must name at least the program to run")
    if not all(isinstance(arg, str) for arg in args):
        raise TypeError("every argument in argv must be a str or an os.PathLike of str")
    return args


def _encode(data: bytes | str | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data


def _spawn_options(
    data: bytes | None,
    cwd: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None,
    preexec: Callable[[], None] | None,
) -> dict[str, Any]:
    """The spawn arguments both faces share: pipes, a new session, the lifeline ``preexec``."""
    return {
        "stdin": subprocess.PIPE if data is not None else subprocess.DEVNULL,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        "cwd": cwd,
        "env": env,
        "start_new_session": True,
        "preexec_fn": preexec,
    }


@contextmanager
def _announcer(ctx: JobContext | None) -> Iterator[Callable[[], None] | None]:
    """The command's ``preexec_fn`` (see ``lifeline.command_preexec``), for one spawn."""
    fd = None if ctx is None else ctx.announce_fd()
    try:
        yield command_preexec(fd)
    finally:
        if fd is not None:
            os.close(fd)


@contextmanager
def _registered(ctx: JobContext | None, pgid: int) -> Iterator[None]:
    """Keep ``pgid`` on the job's list of live process groups while the block runs."""
    if ctx is None:
        yield
        return
    ctx.add_process_group(pgid)
    try:
        yield
    finally:
        ctx.discard_process_group(pgid)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already empty (some systems say EPERM for a group of zombies)


def _result(
    args: list[str], code: int, out: _Capped, err: _Capped, *, check: bool
) -> ProcessResult:
    result = ProcessResult(args, code, out.text(), err.text(), out.truncated or err.truncated)
    if check and code != 0:
        raise ProcessError(args, code, result.stderr)
    return result


# -- async face ------------------------------------------------------------------------------------
async def _communicate(
    proc: asyncio.subprocess.Process, data: bytes | None, out: _Capped, err: _Capped
) -> None:
    async with asyncio.TaskGroup() as group:
        group.create_task(_write_async(proc.stdin, data))
        group.create_task(_read_async(proc.stdout, out))
        group.create_task(_read_async(proc.stderr, err))
    await proc.wait()


async def _write_async(stream: asyncio.StreamWriter | None, data: bytes | None) -> None:
    if stream is None or data is None:
        return
    try:
        stream.write(data)
        await stream.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the command exited without reading all of its input
    finally:
        stream.close()


async def _read_async(stream: asyncio.StreamReader | None, sink: _Capped) -> None:
    while stream is not None and (chunk := await stream.read(_CHUNK)):
        sink.feed(chunk)


async def _stop(proc: asyncio.subprocess.Process, out: _Capped, err: _Capped, grace: float) -> None:
    """Stop the group and reap the leader, reading the pipes meanwhile so they reach EOF."""
    # Process.wait() also waits for the pipes to close, so keep them drained while waiting.
    drain = asyncio.gather(_read_async(proc.stdout, out), _read_async(proc.stderr, err))
    try:
        if proc.stdin is not None:
            proc.stdin.close()
        _signal_group(proc.pid, signal.SIGTERM)
        await _exited_within(proc, grace)
        _signal_group(proc.pid, signal.SIGKILL)
        if not await _exited_within(proc, _DRAIN_AFTER_KILL):
            # A process that left the group holds a pipe open: close our ends so the wait can end.
            # asyncio offers no public way to close a Process's transport.
            transport = getattr(proc, "_transport", None)
            if isinstance(transport, asyncio.SubprocessTransport):
                transport.close()
            await proc.wait()
    except BaseException:
        drain.cancel()
        raise
    await drain


async def _exited_within(proc: asyncio.subprocess.Process, within: float) -> bool:
    try:
        await asyncio.wait_for(proc.wait(), within)
    except TimeoutError:
        return False
    return True


async def _uninterrupted(cleanup: Coroutine[Any, Any, None]) -> None:
    """Run ``cleanup`` to its end even if this task is cancelled meanwhile, then pass it on."""
    task = asyncio.ensure_future(cleanup)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    task.result()


# -- sync face -------------------------------------------------------------------------------------
def _thread(target: Callable[..., None], *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, name="offload-process-io", daemon=True)
    thread.start()
    return thread


def _read_sync(stream: IO[bytes], sink: _Capped) -> None:
    with stream:
        while chunk := stream.read(_CHUNK):
            sink.feed(chunk)


def _write_sync(stream: IO[bytes], data: bytes) -> None:
    view = memoryview(data)
    try:
        with stream:
            while view:
                view = view[stream.write(view) :]
    except BrokenPipeError:
        pass  # the command exited without reading all of its input


def _wait_sync(
    proc: subprocess.Popen[bytes],
    threads: list[threading.Thread],
    deadline: float | None,
    ctx: JobContext | None,
) -> str | None:
    """Wait for the I/O threads and the command; return "timeout" or "cancel" if cut short."""
    pending: list[Callable[[float], bool]] = [partial(_joined, t) for t in threads]
    pending.append(partial(_reaped, proc))
    while pending:
        if ctx is not None and ctx.cancelled:
            return "cancel"
        step = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
        if step <= 0:
            return "timeout"
        if pending[0](step):
            pending.pop(0)
    return None


def _joined(thread: threading.Thread, wait: float) -> bool:
    thread.join(wait)
    return not thread.is_alive()


def _reaped(proc: subprocess.Popen[bytes], wait: float) -> bool:
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        return False
    return True


def _stop_sync(
    proc: subprocess.Popen[bytes], threads: list[threading.Thread], grace: float
) -> None:
    """Stop the group, reap the leader, then let the I/O threads finish reading what is left."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + _DRAIN_AFTER_KILL
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
