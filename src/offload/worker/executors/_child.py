"""The child side of the process executor: load the app once, then run one job per request.

Every message is JSON bytes (``send_bytes``/``recv_bytes``); nothing here is pickled. The
protocol, parent -> child::

    {"type": "run", "id", "task", "attempt", "queue", "args", "kwargs"}

and child -> parent::

    {"type": "ready", "pid"}                  the app is loaded; requests may come
    {"type": "fatal", "error"}                the app could not be loaded; the child exits
    {"type": "progress", "id", "fraction", "message"}
    {"type": "group", "id", "pgid", "live"}   a run_process command started (or was reaped)
    {"type": "result", "value"}               the task returned a JSON value
    {"type": "retry", "delay", "reason"}      the task raised offload.Retry
    {"type": "cancelled", "message"}          the task raised offload.Cancelled
    {"type": "unserializable", "message"}     the task's return value is not JSON
    {"type": "error", "error"}                the task raised; error is ``error_info(exc)``

The child first lowers its CPU priority by ``nice`` (see ``ProcessExecutor``). It ignores SIGINT
(the parent owns Ctrl-C). On SIGTERM it SIGKILLs every process group the running job started
with ``run_process`` and exits at once; it also reports those groups to the parent, which kills
them if the child is killed first (``kill -9``). It exits cleanly when the parent closes the
pipe. When the worker dies without closing it (``kill -9``), the child does as on SIGTERM: it
learns of the death from its lifeline pipe and, on Linux, from a parent-death SIGTERM
(``worker.lifeline``).
"""

from __future__ import annotations

import importlib
import os
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any

from offload.core.codec import dumps, loads, to_json_value
from offload.core.registry import TaskRegistry
from offload.errors import Cancelled, Retry, SerializationError
from offload.worker.context import JobContext, bind, unbind
from offload.worker.failure import error_info
from offload.worker.lifeline import arm_parent_death_signal, watch_lifeline

Message = dict[str, Any]
TERMINATED_EXIT_CODE = 128 + signal.SIGTERM


def main(
    conn: Connection[Any, Any],
    app_path: str,
    nice: int = 0,
    lifeline: Connection[Any, Any] | None = None,
    setup: str | None = None,
) -> None:
    """Entry point of a child process: serve requests from ``conn`` until it closes.

    ``lifeline`` is a pipe only the worker can write to: its EOF means the worker died.
    ``setup`` (``module:function``) is called before the app is imported (``"django:setup"``).
    """
    # A group of its own: a signal meant for the worker's group (Ctrl-C, a service manager)
    # must not kill a running job behind the worker's back; the worker decides its fate.
    os.setpgid(0, 0)
    if nice:
        os.nice(nice)  # lowering one's own priority needs no privilege
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    child = _Child(conn)
    signal.signal(signal.SIGTERM, child.on_sigterm)
    arm_parent_death_signal(signal.SIGTERM)  # Linux: our parent (worker or fork server) died
    if lifeline is not None:
        watch_lifeline(lifeline, child.die)
    try:
        if setup is not None:
            _resolve_setup(setup)()
        registry = _resolve_registry(app_path)
    except Exception as exc:
        child.send({"type": "fatal", "error": error_info(exc)})
        return
    child.send({"type": "ready", "pid": os.getpid()})
    child.serve(registry)


def _resolve_setup(setup: str) -> Callable[[], object]:
    module, _, name = setup.partition(":")
    func: Callable[[], object] = getattr(importlib.import_module(module), name)
    return func


def _resolve_registry(app_path: str) -> TaskRegistry:
    from offload.loader import load_app

    registry: TaskRegistry = load_app(app_path).registry
    return registry


class _Child:
    """One child's state: its pipe and the job it is running (read by the SIGTERM handler)."""

    def __init__(self, conn: Connection[Any, Any]) -> None:
        self._conn = conn
        self._send_lock = threading.Lock()
        self._running: JobContext | None = None

    def send(self, message: Message) -> None:
        data = dumps(message)
        with self._send_lock:  # progress may be reported from the task's own threads
            self._conn.send_bytes(data)

    def serve(self, registry: TaskRegistry) -> None:
        while True:
            try:
                request = loads(self._conn.recv_bytes())
            except (EOFError, OSError):
                return
            self.send(self.run(registry, request))

    def run(self, registry: TaskRegistry, request: Message) -> Message:
        """Run one job and describe its outcome as a message."""
        try:
            value = self._call(registry, request)
        except Retry as exc:
            return {"type": "retry", "delay": exc.delay, "reason": exc.reason}
        except Cancelled as exc:
            return {"type": "cancelled", "message": str(exc)}
        except Exception as exc:
            return {"type": "error", "error": error_info(exc)}
        try:
            return {"type": "result", "value": to_json_value(value)}
        except SerializationError as exc:
            return {"type": "unserializable", "message": str(exc)}

    def _call(self, registry: TaskRegistry, request: Message) -> Any:
        spec = registry.get(request["task"])
        args, kwargs = spec.decode_arguments(request["args"], request["kwargs"])
        job_id: str = request["id"]
        ctx = JobContext(
            id=job_id,
            task=spec.name,
            attempt=request["attempt"],
            queue=request["queue"],
            _sink=lambda fraction, message: self._progress(job_id, fraction, message),
            _watcher=_GroupReporter(self, job_id),
        )
        self._running = ctx
        token = bind(ctx)
        try:
            return spec.func(*args, **kwargs)
        finally:
            unbind(token)
            self._running = None

    def _progress(self, job_id: str, fraction: float | None, message: str | None) -> None:
        self.send({"type": "progress", "id": job_id, "fraction": fraction, "message": message})

    def report_group(self, job_id: str, pgid: int, live: bool) -> None:
        self.send({"type": "group", "id": job_id, "pgid": pgid, "live": live})

    def on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        """Kill the running job's process groups, then leave without cleanup."""
        self.die()

    def die(self) -> None:
        """Kill the running job's process groups, then leave without cleanup."""
        running = self._running
        for pgid in running.process_groups() if running is not None else []:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        os._exit(TERMINATED_EXIT_CODE)


class _GroupReporter:
    """Tells the parent about a job's process groups (a ``GroupWatcher``), so that they die
    with this child even when it cannot kill them itself."""

    def __init__(self, child: _Child, job_id: str) -> None:
        self._child, self._job_id = child, job_id

    def watch(self, pgid: int) -> None:
        self._child.report_group(self._job_id, pgid, True)

    def unwatch(self, pgid: int) -> None:
        self._child.report_group(self._job_id, pgid, False)

    def announce_fd(self) -> int | None:
        return None  # the parent learns of a group through report_group only
