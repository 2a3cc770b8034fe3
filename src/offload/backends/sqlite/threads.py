"""Threads that own SQLite connections: one writer with group commit, one reader.

sqlite3 calls block, so they never run on the event loop. Callers hand a function of the
connection to a thread and await its result. The writer drains every operation that queued up
while the previous transaction committed and runs them all in one ``BEGIN IMMEDIATE`` ...
``COMMIT`` (each inside its own SAVEPOINT, so one failing operation does not undo the others):
with ``synchronous=FULL`` many concurrent submits share one fsync.

An operation is *durable* (the default: a submit, a cancel) or not (a worker's own bookkeeping:
claims, renewals, outcomes, reaping). A batch with no durable operation commits with
``synchronous=NORMAL`` when the writer was given a ``relaxed`` level: in WAL mode that commit
survives any process crash, and only a power or OS failure can roll it back (the job then runs
again: at-least-once). A durable commit fsyncs the log, and with it every earlier commit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from offload.errors import BackendError, BackendUnavailable, OffloadError

log = logging.getLogger("offload.backends.sqlite")

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]


@dataclass(eq=False, slots=True)
class _Item:
    """One queued call. ``state`` moves under the thread's lock: a call its caller gave up
    on before the thread took it is never run (a submit that raised is not stored)."""

    op: Op
    loop: asyncio.AbstractEventLoop
    fut: asyncio.Future[Any]
    durable: bool
    state: str = "queued"  # -> "taken" (running; back to queued if its batch retries) or "dropped"


MAX_BATCH = 512
LOCK_RETRY_DEADLINE = 30.0
#: Waits between attempts to take the write lock: short, since a holder's transaction is short.
LOCK_PAUSE_MIN = 0.0002
LOCK_PAUSE_MAX = 0.005


def is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def translate(exc: BaseException) -> BaseException:
    """sqlite3 errors become offload errors; offload's own errors pass through unchanged."""
    if isinstance(exc, OffloadError) or not isinstance(exc, sqlite3.Error):
        return exc
    if is_busy(exc):
        return BackendUnavailable(f"SQLite database stayed locked: {exc}")
    return BackendError(f"SQLite error: {exc}")


class SQLiteThread:
    """A thread that owns one connection and runs submitted functions on it, in order."""

    def __init__(
        self,
        name: str,
        connect: Callable[[], sqlite3.Connection],
        *,
        transactional: bool,
        durable: str | None = None,
        relaxed: str | None = None,
        lock_timeout: float = LOCK_RETRY_DEADLINE,
    ) -> None:
        self._connect = connect
        self._lock_timeout = lock_timeout  # seconds to wait for the write lock, then fail
        self._transactional = transactional
        # synchronous levels for batches with and without a durable operation (None: as is)
        self._levels = {True: durable, False: relaxed or durable}
        self._level = durable
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        # Taken to accept a call or to close: every accepted call is queued before the stop.
        self._gate = threading.Lock()
        self._open = False

    def start(self) -> None:
        self._open = True
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error

    def stop(self) -> None:
        with self._gate:
            was_open, self._open = self._open, False
            if was_open:
                self._queue.put(None)
        self._thread.join()
        self._fail_pending()  # only after a crash could anything be left

    async def run(self, op: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        with self._gate:
            if not self._open:
                raise BackendError("the SQLite backend is closed; open it before use")
            item = _Item(op, loop, fut, durable)
            self._queue.put(item)
        try:
            return await fut
        except asyncio.CancelledError:
            with self._gate:
                if item.state == "queued":
                    item.state = "dropped"
            raise

    def _take(self, item: _Item) -> bool:
        """Whether to run ``item`` now (False: its caller gave up before it started)."""
        with self._gate:
            if item.state == "dropped":
                return False
            item.state = "taken"
            return True

    def _requeue(self, batch: list[_Item]) -> None:
        """A batch rolled back to be retried: its callers may still give up until it reruns."""
        with self._gate:
            for item in batch:
                if item.state == "taken":
                    item.state = "queued"

    # -- thread side ---------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._startup_error = exc
            self._open = False
            self._ready.set()
            return
        self._ready.set()
        try:
            self._serve(conn)
        except BaseException:  # a bug or a lost connection: refuse calls loudly from now on
            log.critical(
                "the %s thread stopped; the backend refuses calls", self._thread.name, exc_info=True
            )
            with self._gate:
                self._open = False
        finally:
            conn.close()
            self._fail_pending()

    def _serve(self, conn: sqlite3.Connection) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                if self._transactional:
                    self._run_batch(conn, batch)
                else:
                    for one in batch:
                        self._run_one(conn, one)
            except BaseException as exc:  # outside any operation: fail this batch
                error = BackendError(f"SQLite error outside any operation: {exc!r}")
                for item in batch:
                    _settle(item.loop, item.fut, False, error)
                if not isinstance(exc, Exception):
                    raise
                log.error("SQLite %s batch failed: %s", self._thread.name, exc, exc_info=True)
                conn = self._recover(conn)  # and keep serving

    def _next_batch(self) -> list[_Item] | None:
        item = self._queue.get()
        if item is None:
            return None
        batch = [item]
        while len(batch) < MAX_BATCH:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                self._queue.put(None)
                break
            batch.append(nxt)
        return batch

    def _recover(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        """The connection after a failure outside any operation: rolled back, or a new one
        (raises when none can be made: the thread then stops and fails every call)."""
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return conn
        except sqlite3.Error:
            conn.close()
            self._level = self._levels[True]
            return self._connect()

    def _fail_pending(self) -> None:
        """Answer every call still queued: nothing will run it."""
        error = BackendError("the SQLite backend was closed before this call ran; retry it")
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                _settle(item.loop, item.fut, False, error)

    def _run_one(self, conn: sqlite3.Connection, item: _Item) -> None:
        deadline = time.monotonic() + self._lock_timeout
        while True:
            if not self._take(item):
                return
            try:
                _settle(item.loop, item.fut, True, item.op(conn))
                return
            except BaseException as exc:
                if is_busy(exc) and time.monotonic() < deadline:
                    self._requeue([item])
                    time.sleep(0.005)
                    continue
                _settle(item.loop, item.fut, False, translate(exc))
                return

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Item]) -> None:
        level = self._levels[any(item.durable for item in batch)]
        if level != self._level and level is not None:  # only outside a transaction
            conn.execute(f"PRAGMA synchronous={level}")
            self._level = level
        deadline = time.monotonic() + self._lock_timeout
        pause = LOCK_PAUSE_MIN
        while True:
            try:
                outcomes = self._transaction(conn, batch)
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if is_busy(exc) and time.monotonic() < deadline:
                    self._requeue(batch)
                    time.sleep(pause)
                    pause = min(pause * 1.5, LOCK_PAUSE_MAX)
                    continue
                error = translate(exc)
                for item in batch:
                    _settle(item.loop, item.fut, False, error)
                return
            settled = zip(batch, outcomes, strict=True)
            _settle_all([(item.loop, item.fut, ok, value) for item, (ok, value) in settled])
            return

    def _transaction(self, conn: sqlite3.Connection, batch: list[_Item]) -> list[tuple[bool, Any]]:
        conn.execute("BEGIN IMMEDIATE")
        outcomes: list[tuple[bool, Any]] = []
        single = len(batch) == 1
        for item in batch:
            if not self._take(item):
                outcomes.append((False, asyncio.CancelledError()))
                continue
            if not single:
                conn.execute("SAVEPOINT op")
            try:
                outcomes.append((True, item.op(conn)))
            except Exception as exc:
                if is_busy(exc):
                    raise
                if single:
                    conn.execute("ROLLBACK")
                    conn.execute("BEGIN IMMEDIATE")
                else:
                    conn.execute("ROLLBACK TO op")
                outcomes.append((False, translate(exc)))
            if not single:
                conn.execute("RELEASE op")
        conn.execute("COMMIT")
        return outcomes


def _settle_all(
    results: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], bool, Any]],
) -> None:
    """Hand a batch's results to their loops: one wake-up per loop, not one per operation."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
    for loop, fut, ok, value in results:
        by_loop.setdefault(loop, []).append((fut, ok, value))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_deliver_all, items)
        except RuntimeError:
            pass  # the caller's loop is closed; nobody is waiting any more


def _deliver_all(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in items:
        if fut.done():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


def _settle(
    loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any], ok: bool, value: Any
) -> None:
    def deliver() -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    try:
        loop.call_soon_threadsafe(deliver)
    except RuntimeError:
        pass  # the caller's loop is closed; nobody is waiting any more
