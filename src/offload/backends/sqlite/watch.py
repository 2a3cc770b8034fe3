"""Idle workers' wake-up on SQLite: one thread polls ``PRAGMA data_version`` for all waiters.

``data_version`` changes when another connection commits; reading it costs microseconds. The
thread polls only while some coroutine waits, and wakes that coroutine's loop only when the
version moved or its deadline passed, so an idle worker's event loop sleeps instead of waking
every few milliseconds (which cost an idle worker several percent of a core). The thread also
runs each waiter's first check (is work ready already? when is the next job due?) on its own
connection, right after reading the version it compares against: a commit in between still
moves the version, so no wake-up is lost.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Given the watcher's connection: seconds to wait at most (<= 0: work is ready now).
Probe = Callable[[sqlite3.Connection], float]
#: Seconds between attempts to connect while the watcher has no connection.
RECONNECT_PAUSE = 0.5
log = logging.getLogger("offload.backends.sqlite")


@dataclass(eq=False)
class _Waiter:
    probe: Probe
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    version: int | None = None  # None: not probed yet
    deadline: float = 0.0  # time.monotonic()


class Watcher:
    def __init__(self, connect: Callable[[], sqlite3.Connection], interval: float) -> None:
        self._connect = connect
        self._interval = interval
        self._waiters: list[_Waiter] = []
        self._lock = threading.Lock()
        self._work = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    async def wait(self, probe: Probe) -> None:
        """Return once another connection commits, or after the time ``probe`` gives."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(probe, loop, loop.create_future())
        with self._lock:
            if self._closed:
                return
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._main, name="offload-sqlite-watch", daemon=True
                )
                self._thread.start()
            self._waiters.append(waiter)
            self._work.set()
        try:
            await waiter.future
        finally:
            self._drop(waiter)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
            self._work.set()
        if thread is not None:
            thread.join()

    def _drop(self, waiter: _Waiter) -> None:
        with self._lock:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _main(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._work.wait()
                with self._lock:
                    if self._closed:
                        return
                    waiters = list(self._waiters)
                    if not waiters:
                        self._work.clear()
                        continue
                conn = conn or self._reconnect(waiters)
                if conn is not None and not self._poll(conn, waiters):
                    conn.close()
                    conn = None
                time.sleep(self._interval)
        except BaseException:  # a bug: say so; the next wait starts a new thread
            log.critical("the SQLite wake-up thread stopped", exc_info=True)
        finally:
            if conn is not None:
                conn.close()
            with self._lock:
                for w in self._waiters:
                    _wake(w)

    def _reconnect(self, waiters: list[_Waiter]) -> sqlite3.Connection | None:
        """A new connection, or None after a pause that wakes the waiters (their claims
        report the problem, at most once per RECONNECT_PAUSE instead of in a tight loop)."""
        try:
            return self._connect()
        except Exception as exc:
            log.warning("SQLite wake-up thread cannot connect (%s); retrying", exc)
        time.sleep(RECONNECT_PAUSE)
        self._wake_all(waiters)
        return None

    def _poll(self, conn: sqlite3.Connection, waiters: list[_Waiter]) -> bool:
        """Wake the waiters whose version moved or whose time is up; False when the
        connection failed (every waiter is woken: its next claim reports or retries)."""
        try:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            now = time.monotonic()
            for w in waiters:
                if w.version is None:
                    w.version, w.deadline = version, now + w.probe(conn)
                if version != w.version or now >= w.deadline:
                    self._drop(w)
                    _wake(w)
        except sqlite3.Error:
            self._wake_all(waiters)
            return False
        except Exception:
            log.exception("an SQLite wake-up probe failed")
            self._wake_all(waiters)
        return True

    def _wake_all(self, waiters: list[_Waiter]) -> None:
        for w in waiters:
            self._drop(w)
            _wake(w)


def _wake(w: _Waiter) -> None:
    def done() -> None:
        if not w.future.done():
            w.future.set_result(None)

    try:
        w.loop.call_soon_threadsafe(done)
    except RuntimeError:
        pass  # that loop is closed: nobody waits any more
