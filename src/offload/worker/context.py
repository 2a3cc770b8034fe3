"""The job context: what code inside a running job can ask of offload (``offload.current()``)."""

from __future__ import annotations

import contextlib
import contextvars
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from offload.errors import Cancelled, OffloadError

ProgressSink = Callable[[float | None, str | None], None]


class GroupWatcher(Protocol):
    """Who else must know a job's live process groups (the worker's warden)."""

    def watch(self, pgid: int) -> None: ...

    def unwatch(self, pgid: int) -> None: ...

    def announce_fd(self) -> int | None:
        """A new file descriptor (the caller closes it) to which a new command may write
        ``+<pid>\\n`` itself, between fork and exec; None where there is none."""
        ...


#: Guards the lazy parts of every JobContext (most jobs never need a cancel event or a group).
_LAZY = threading.Lock()


@dataclass(eq=False)
class JobContext:
    """The running job, as seen from inside it.

    ``progress`` may be called from any thread; updates are coalesced and written in the
    background. ``cancelled`` turns true when the job was cancelled, timed out, lost its lease or
    the worker is shutting down; thread tasks should poll it (or call ``check_cancelled()``)
    because a thread cannot be interrupted.
    """

    id: str
    task: str
    attempt: int
    queue: str
    _sink: ProgressSink = field(repr=False)
    _cancel: threading.Event | None = field(default=None, repr=False)  # made on first need
    _process_groups: set[int] = field(default_factory=set, repr=False)
    _watcher: GroupWatcher | None = field(default=None, repr=False)
    _owner_check: Callable[[], bool] | None = field(default=None, repr=False)

    def progress(self, fraction: float | None = None, message: str | None = None) -> None:
        """Report progress: ``fraction`` in [0, 1] and/or a short message."""
        if fraction is not None and not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress fraction must be between 0 and 1, not {fraction}")
        self._sink(fraction, message)

    @property
    def cancelled(self) -> bool:
        """Whether the job should stop now."""
        event = self._cancel
        return event is not None and event.is_set()

    def check_cancelled(self) -> None:
        """Raise :class:`offload.Cancelled` if the job should stop."""
        if self.cancelled:
            raise Cancelled(f"job {self.id} was cancelled")

    def still_owner(self) -> bool:
        """Whether this run still owns the job: call it right before publishing output that
        another run could also write (renaming a finished file into place, say).

        False once the job was cancelled, timed out or lost its lease, and from the moment the
        worker can no longer be sure that no other worker has taken the job over (its lease or
        heartbeat could not be renewed in time). A fencing check, not a lock: keep the step it
        guards short (a rename), and make it idempotent. In a process-pool child it is False
        only once the job was cancelled: a child whose worker loses the job is killed.
        """
        if self.cancelled:
            return False
        return self._owner_check is None or self._owner_check()

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Block up to ``timeout`` seconds for a cancel; True if one came (a cancellable sleep)."""
        return self.cancel_event.wait(timeout)

    # -- used by the worker and run_process ----------------------------------------------------
    def request_cancel(self) -> None:
        self.cancel_event.set()

    @property
    def cancel_event(self) -> threading.Event:
        event = self._cancel
        if event is None:
            with _LAZY:
                if self._cancel is None:
                    self._cancel = threading.Event()
                event = self._cancel
        return event

    def add_process_group(self, pgid: int) -> None:
        with _LAZY:
            self._process_groups.add(pgid)
        if self._watcher is not None:
            self._watcher.watch(pgid)

    def discard_process_group(self, pgid: int) -> None:
        with _LAZY:
            self._process_groups.discard(pgid)
        if self._watcher is not None:
            self._watcher.unwatch(pgid)

    def announce_fd(self) -> int | None:
        """See :meth:`GroupWatcher.announce_fd` (None outside a worker)."""
        return None if self._watcher is None else self._watcher.announce_fd()

    def process_groups(self) -> list[int]:
        with _LAZY:
            return list(self._process_groups)

    def kill_process_groups(self) -> None:
        """SIGKILL every process group still listed, and forget them."""
        for pgid in self.process_groups():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)  # EPERM: a group of zombies on some systems
            self.discard_process_group(pgid)


_current: contextvars.ContextVar[JobContext] = contextvars.ContextVar("offload_job")


def current() -> JobContext:
    """The context of the job running in this task (thread, coroutine or child process).

    Raises OffloadError when called outside a job (for example when a task function is called
    directly in a unit test).
    """
    try:
        return _current.get()
    except LookupError:
        raise OffloadError(
            "offload.current() was called outside a running job; it works only inside a task "
            "executed by a worker"
        ) from None


def current_or_none() -> JobContext | None:
    """The running job's context, or None outside a job."""
    return _current.get(None)


def bind(ctx: JobContext) -> contextvars.Token[JobContext]:
    """Make ``ctx`` the current job for this context (the worker calls this)."""
    return _current.set(ctx)


def unbind(token: contextvars.Token[JobContext]) -> None:
    _current.reset(token)
