"""How an idle Redis worker waits: wake-up hints on a pub/sub channel that submits publish to,
and jobs handed to it by the submit itself (lua/handoff.lua: one round trip from submit to run).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis import exceptions as rex
from redis.asyncio.client import PubSub

log = logging.getLogger("offload.backends.redis")


class Wakeups:
    """Listens on the namespace's ``wake`` channel; each message (and each interruption of the
    channel, so that a claim finds out what it missed) is a hint, kept until :meth:`clear`.

    The waiter is a plain future that the listener resolves, so an idle worker's claim starts
    one loop turn after the message is read (``asyncio.wait_for`` over ``Event.wait`` costs a
    task and three turns more: ~0.1 ms of a 2 ms pickup on a busy 2-core machine).
    """

    def __init__(self) -> None:
        self._hinted = False
        self._waiter: asyncio.Future[None] | None = None
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None

    async def listen(self, client: aioredis.Redis, channel: str) -> None:
        if self._listener is not None and not self._listener.done():
            return
        if self._pubsub is None:
            self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(channel)
        self._listener = asyncio.create_task(self._read(self._pubsub))

    @property
    def hinted(self) -> bool:
        return self._hinted

    def clear(self) -> None:
        """Forget the hints so far: only a later one ends :meth:`wait` early."""
        self._hinted = False

    def hint(self) -> None:
        self._hinted = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, seconds: float) -> None:
        """Until the next hint (or one since :meth:`clear`), or ``seconds`` pass."""
        if self._hinted:
            return
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(seconds, _settle, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            if self._waiter is waiter:
                self._waiter = None

    async def _read(self, pubsub: PubSub) -> None:
        pause = 0.05
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
                pause = 0.05
            except (rex.ConnectionError, rex.TimeoutError, OSError) as exc:
                log.debug("wake-up channel interrupted (%s); reconnecting", exc)
                self.hint()  # let the claim loop find out what it missed
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            if message is not None:
                self.hint()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        if self._pubsub is not None:
            # redis-py < 6 leaves PubSub.aclose unannotated: binding it to a typed name (not
            # calling it directly) type-checks on every supported version without an ignore.
            close_pubsub: Callable[[], Awaitable[None]] = self._pubsub.aclose
            await close_pubsub()
            self._pubsub = None


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


#: How long an idle worker's registration for hand-offs lasts (it renews it each time it
#: waits again): a worker killed while registered is handed at most one job, which is then
#: recovered as any job of a dead worker.
WINDOW = 1.0
#: A job received longer ago than this is claimed through the CLAIM script (see claim()).
STALE = 0.05

Script = Callable[[str, Sequence[Any]], Awaitable[Any]]
Flat = list[str]


class Handoffs:
    """A worker's side of the hand-off (lua/handoff.lua). The worker's claims name it and its
    lease; before it waits, a claim of nothing registers it as idle; then it blocks on its
    list (``BLMOVE hand:<id> got:<id>``) as well as on the wake-up hints. A job received is
    kept until the next :meth:`claim`, which returns it without a round trip. Each CLAIM
    script also takes back what was handed and not received (a reply lost on the way, a wait
    cut short): the ones received are dropped from its reply by :meth:`fresh`."""

    def __init__(self, root: str, wakeups: Wakeups) -> None:
        self.root = root
        self.worker: str | None = None  # set by the first claim: only workers claim
        self.lease = 0.0
        self._wakeups = wakeups
        self._kept: list[tuple[Flat, float]] = []  # received (at, monotonic), not yet claimed
        self._seen: set[tuple[str, str]] = set()  # (id, token) received since the last CLAIM
        self._conn: aioredis.Connection | None = None
        self._leaving: asyncio.Future[bool] | None = None  # the unregistration at a stop

    def claim(self, worker: str, lease: float) -> list[Flat]:
        """Jobs received since the last claim (the claim returns them and sends nothing).
        One kept longer than STALE is left to the CLAIM script instead, which checks that it
        is still this worker's and renews its lease: the worker tracks a lease from the
        moment it claims, and must not think it longer than it is."""
        self.worker, self.lease = worker, float(lease)
        kept, self._kept = self._kept, []
        now = time.monotonic()
        for flat, _ in (k for k in kept if now - k[1] > STALE):
            self._seen.discard(_key(flat))
        return [flat for flat, at in kept if now - at <= STALE]

    def fresh(self, reply: list[Flat]) -> list[Flat]:
        """A CLAIM script's reply without the jobs already received."""
        seen, self._seen = self._seen, set()
        return [flat for flat in reply if _key(flat) not in seen] if seen else reply

    async def wait_for_work(
        self,
        client: aioredis.Redis,
        script: Script,
        now: str,
        queues: Sequence[str],
        timeout: float,
    ) -> None:
        """Register (a claim of nothing), check for ready work, then wait for a hand-off, a
        hint, or the timeout. Errors end the wait: the caller's claim reports them. Cancelled
        (the worker stops claiming), it ends the registration at once."""
        try:
            await self._wait_for_work(client, script, now, queues, timeout)
        except asyncio.CancelledError:
            if self.worker is not None and self._leaving is None:
                args = claim_args(now, self.worker, self.lease, 0, False, [])
                self._leaving = asyncio.ensure_future(self._register(script, args, 0.0))
                # The wait ends once nothing more can be handed over (worker.py logs then).
                await asyncio.gather(asyncio.shield(self._leaving), return_exceptions=True)
            raise

    async def _wait_for_work(
        self,
        client: aioredis.Redis,
        script: Script,
        now: str,
        queues: Sequence[str],
        timeout: float,
    ) -> None:
        await self._wakeups.listen(client, f"{self.root}wake")
        registered = time.monotonic()
        if self.worker is not None:
            room = [(queue, 1) for queue in queues]
            args = claim_args(now, self.worker, self.lease, 0, False, room, WINDOW)
            # Shielded: a stop must not drop its reply, which may hold jobs handed earlier.
            if await asyncio.shield(self._register(script, args, registered)):
                return
        ready, due, at = await script("ready", [now, *queues])
        if ready or self._wakeups.hinted:
            return
        wait = timeout if due == "" else min(timeout, max(0.0, float(due) - float(at)))
        window = 0.0 if self.worker is None else WINDOW - (time.monotonic() - registered)
        if min(wait, window) < 0.002:
            await self._wakeups.wait(wait)
            return
        pool = client.connection_pool
        move = asyncio.ensure_future(self._move(pool, min(wait, window)))
        move.add_done_callback(self._moved)
        try:
            await self._wakeups.wait(wait + 1.0)
        finally:
            if not move.done():
                move.cancel()  # what it may have moved is found by the next claim
            await asyncio.gather(move, return_exceptions=True)
        raw = None if move.cancelled() or move.exception() else move.result()
        if raw is not None:
            flat: Flat = orjson.loads(raw)
            self._seen.add(_key(flat))
            self._kept.append((flat, time.monotonic()))

    def _moved(self, move: asyncio.Future[str | None]) -> None:
        """A job or the timeout ends the wait; an error does not (the wait goes on for hints,
        up to its timeout): a broken list must not turn the idle loop into a busy one."""
        if not move.cancelled() and move.exception() is None:
            self._wakeups.hint()
        elif not move.cancelled():
            log.debug("the hand-off wait failed: %s", move.exception())

    async def _register(self, script: Script, args: list[Any], at: float) -> bool:
        """A claim of nothing that registers (or only unregisters); what it takes back is kept
        for the next claim."""
        handed = self.fresh(await script("claim", args))
        self._kept += [(flat, at) for flat in handed]
        return bool(handed)

    async def _move(self, pool: aioredis.ConnectionPool, seconds: float) -> str | None:
        conn = self._conn
        if conn is None:
            conn = self._conn = pool.make_connection()  # type: ignore[no-untyped-call]
        hand, got = f"{self.root}hand:{self.worker}", f"{self.root}got:{self.worker}"
        try:
            if not conn.is_connected:
                await conn.connect()
            await conn.send_command("BLMOVE", hand, got, "LEFT", "RIGHT", f"{seconds:.3f}")
            reply: str | None = await conn.read_response()
            return reply
        except BaseException:
            self._conn = None
            await _drop(conn)
            raise

    async def leave(self, script: Script, now: str) -> list[Flat]:
        """End the registration; the jobs handed to this worker that it never started."""
        if self.worker is None:
            return []
        if self._leaving is not None:
            await asyncio.gather(self._leaving, return_exceptions=True)
        reply = await script("claim", claim_args(now, self.worker, self.lease, 0, False, []))
        kept, self._kept = [flat for flat, _ in self._kept], []  # after: a registration ahead
        return kept + self.fresh(reply)  # of it on the lane has kept what it took back

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await _drop(conn)


def claim_args(
    now: str,
    worker: str,
    lease: float,
    limit: int,
    idle: bool,
    room: Sequence[tuple[str, int]],
    register: float | None = None,
) -> list[Any]:
    """The CLAIM script's arguments (see lua/claim.lua); ``register``: the seconds of an idle
    registration made if nothing is claimed."""
    args: list[Any] = [now, worker, repr(float(lease)), limit, "1" if idle else "0"]
    args.append("" if register is None else repr(register))
    for queue, cap in room:
        args += [queue, cap]
    return args


def _key(flat: Flat) -> tuple[str, str]:
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    return fields.get("id", ""), fields.get("token", "")


async def _drop(conn: aioredis.Connection) -> None:
    try:
        await conn.disconnect(nowait=True)
    except Exception:  # already broken: nothing more to release
        pass
