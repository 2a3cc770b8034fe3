"""Idle workers' wake-up on PostgreSQL: ``LISTEN`` on one connection per backend object.

Writes that make work claimable (a submit, a retry, a release, a reaped lease, a freed slot)
``NOTIFY`` the schema's channel inside their transaction; PostgreSQL delivers it at commit, never
for a rolled-back one. The listener task wakes every waiter on each notification; a waiter
registers before it probes (is work ready? when is the next job due?), so a commit between the
probe and the wait still wakes it. While the listening connection is down, and always in
poll-only mode (``?notify=false``, for PgBouncer in transaction pooling, where ``LISTEN`` does
not work), waiters probe every ``poll_interval`` instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

log = logging.getLogger("offload.backends.postgres")
#: Seconds between attempts to connect while the listener has no connection.
RECONNECT_PAUSE = 0.5

Probe = Callable[[], Awaitable[float]]


class Listener:
    def __init__(self, conninfo: str, channel: str | None, poll_interval: float) -> None:
        self._conninfo = conninfo
        self.channel = channel  # None: poll-only mode
        self._poll_interval = poll_interval
        self._waiters: set[asyncio.Future[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._listening = False
        self._sessions = 0  # LISTEN sessions started: a wake-up from a new one is no news
        self._closed = False

    async def wait(self, probe: Probe, timeout: float) -> None:
        """Return once a notification arrives, or after the seconds ``probe`` gives (0: at
        once), ``timeout`` at most."""
        if self._closed:
            return
        self._start()
        deadline = time.monotonic() + timeout
        while True:
            fut = asyncio.get_running_loop().create_future()
            self._waiters.add(fut)
            session = self._sessions
            try:
                delay = min(await probe(), deadline - time.monotonic())
                if delay <= 0:
                    return
                if self._listening:
                    await asyncio.wait_for(fut, delay)
                    if session == self._sessions:  # a notification, not a listener (re)start
                        return
                    continue
                # Not listening (yet): probe again soon; a listener that starts wakes us.
                await asyncio.wait_for(fut, min(delay, self._poll_interval))
            except TimeoutError:
                if self._listening or time.monotonic() >= deadline:
                    return
            finally:
                self._waiters.discard(fut)
                fut.cancel()

    def _start(self) -> None:
        if self.channel is None or self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self._listen(self.channel))

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._wake_all()

    def _wake_all(self) -> None:
        for fut in list(self._waiters):
            if not fut.done():
                fut.set_result(None)

    async def _listen(self, channel: str) -> None:
        while not self._closed:
            conn: psycopg.AsyncConnection[Any] | None = None
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                await conn.execute(f'LISTEN "{channel}"')
                self._listening = True
                self._sessions += 1
                self._wake_all()  # waiters that probed before we listened probe again
                async for _ in conn.notifies():
                    self._wake_all()
            except psycopg.Error as exc:
                log.warning("PostgreSQL wake-up listener lost its connection (%s); retrying", exc)
            finally:
                self._listening = False
                if conn is not None:
                    await conn.close()
            self._wake_all()
            await asyncio.sleep(RECONNECT_PAUSE)
