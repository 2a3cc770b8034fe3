"""The Redis backend's wake-up hints: a pub/sub channel that submits publish to."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis import exceptions as rex
from redis.asyncio.client import PubSub

log = logging.getLogger("offload.backends.redis")


class Wakeups:
    """Listens on the namespace's ``wake`` channel; ``event`` is set by each message (and by
    each interruption of the channel, so that a claim finds out what it missed)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None

    async def listen(self, client: aioredis.Redis, channel: str) -> None:
        if self._listener is not None and not self._listener.done():
            return
        if self._pubsub is None:
            self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(channel)
        self._listener = asyncio.create_task(self._read(self._pubsub))

    async def wait(self, seconds: float) -> None:
        """Until the next hint, or ``seconds`` pass."""
        try:
            await asyncio.wait_for(self.event.wait(), seconds)
        except TimeoutError:
            pass

    async def _read(self, pubsub: PubSub) -> None:
        pause = 0.05
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
                pause = 0.05
            except (rex.ConnectionError, rex.TimeoutError, OSError) as exc:
                log.debug("wake-up channel interrupted (%s); reconnecting", exc)
                self.event.set()  # let the claim loop find out what it missed
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            if message is not None:
                self.event.set()

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
