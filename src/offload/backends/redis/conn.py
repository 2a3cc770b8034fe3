"""The Redis backend's connections: redis-py's, with commands packed by hiredis; its errors mapped.

redis-py's synchronous connection packs commands with hiredis's C packer when hiredis is
installed; its asyncio connection always packs them in Python, which re-joins the growing
buffer once per argument. A worker sends a script call per claim and per batch of outcomes,
and that packing was the largest single cost of a no-op job in the worker's profile.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as rex
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from offload.backends.redis.scripts import FUNCTIONS, LIBRARY, SCRIPTS, script
from offload.errors import BackendError, BackendUnavailable, ConfigurationError

T = TypeVar("T")
log = logging.getLogger("offload.backends.redis")

_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _pack
except ImportError:  # pragma: no cover - the redis extra installs hiredis
    _pack = None


class PackedConnection(aioredis.Connection):
    """A TCP connection whose commands are packed by hiredis (one buffer per command)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        head = args[0]
        if isinstance(head, str) and " " in head:  # "CONFIG GET": separate words, as redis-py
            args = (*head.split(), *args[1:])
        assert _pack is not None  # connection_class() picks this class only with hiredis
        return [_pack(args)]

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """redis-py's, without its ``wait_for`` (a task and two loop turns per command) when
        the kernel takes the whole command at once: the socket timeout only ever bounds a
        wait for buffer space, so only that wait is timed."""
        writer = self._writer
        if check_health or writer is None or writer.transport.is_closing():
            return await super().send_packed_command(command, check_health)
        try:
            writer.writelines(command)
            if writer.transport.get_write_buffer_size():
                await asyncio.wait_for(writer.drain(), self.socket_timeout)
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise rex.TimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await self.disconnect(nowait=True)
            raise rex.ConnectionError(f"Error while writing to socket: {exc}") from exc


def connection_class() -> type[aioredis.Connection]:
    """The class for ``redis://`` pools (``rediss://`` and ``unix://`` keep redis-py's)."""
    return aioredis.Connection if _pack is None else PackedConnection


def _packed_for(url: str) -> dict[str, Any]:
    """The pool's connection class for ``redis://``; ``rediss://`` (TLS) and ``unix://`` keep
    the one redis-py picks from the URL (passing ours would replace it)."""
    return {"connection_class": connection_class()} if url.startswith("redis://") else {}


#: Connections one backend object opens at most; more concurrent calls wait up to POOL_WAIT s.
MAX_CONNECTIONS = 64
POOL_WAIT = 10.0


def open_pool(url: str, shown: str) -> tuple[aioredis.BlockingConnectionPool, aioredis.Redis]:
    """The backend's pool and a client over it (closing the client closes the pool)."""
    try:
        # A busy process waits for a free connection rather than failing at a maximum.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=POOL_WAIT,
            decode_responses=True,
            socket_connect_timeout=5.0,
            socket_timeout=15.0,
            retry=Retry(NoBackoff(), 0),  # retries are ours: a claim must never run twice
            **_packed_for(url),
        )
        return pool, aioredis.Redis.from_pool(pool)
    except ValueError as exc:
        raise ConfigurationError(f"invalid Redis URL for {shown}: {exc}") from None


class Scripts:
    """How a backend runs its scripts: FCALL of the functions of one library (Redis >= 7.0;
    the helpers the scripts share are built once, when Redis loads the library), or EVALSHA
    of each script's whole source (Redis 6.2, or a server that refuses FUNCTION LOAD). A call
    that finds its function or script missing (a restarted Redis without persistence) loads
    it and is sent again, once."""

    def __init__(self, functions: bool) -> None:
        self.functions = functions
        self._shas = {n: hashlib.sha1(script(n).encode()).hexdigest() for n in SCRIPTS}

    def command(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> tuple[Any, ...]:
        """The command that runs script ``name``."""
        head = ("FCALL", FUNCTIONS[name]) if self.functions else ("EVALSHA", self._shas[name])
        return (*head, len(keys), *keys, *args)

    def load_command(self, name: str) -> tuple[str, ...]:
        """The command that loads script ``name`` (with FCALL: the whole library)."""
        return ("FUNCTION", "LOAD", LIBRARY) if self.functions else ("SCRIPT", "LOAD", script(name))

    @staticmethod
    def missing(exc: rex.ResponseError) -> bool:
        """Did the server refuse a call because it does not know the script or function?"""
        return isinstance(exc, rex.NoScriptError) or str(exc).startswith("Function not found")

    @staticmethod
    def loaded(exc: rex.ResponseError) -> bool:
        """Did FUNCTION LOAD fail because the library is loaded already (by another client)?"""
        return "already exists" in str(exc)

    async def call(
        self, send: Callable[..., Awaitable[Any]], name: str, keys: list[str], args: Sequence[Any]
    ) -> Any:
        """Run script ``name`` with ``send`` (one command, its reply), loading it if missing."""
        try:
            return await send(*self.command(name, keys, args))
        except rex.ResponseError as exc:
            if not self.missing(exc):
                raise
        try:
            await send(*self.load_command(name))
        except rex.ResponseError as exc:
            if not self.loaded(exc):
                raise
        return await send(*self.command(name, keys, args))


async def choose_scripts(client: aioredis.Redis, functions: bool, root: str) -> Scripts:
    """FCALL if ``functions`` and the server loads the library and lets this user call it
    (Redis >= 7.0, FUNCTION and FCALL allowed by its ACL), else EVALSHA. ``root``: the
    namespace's key root, for a read-only call that checks FCALL is allowed."""
    if not functions:
        return Scripts(False)
    try:
        await client.execute_command("FUNCTION", "LOAD", LIBRARY)  # type: ignore[no-untyped-call]
    except rex.ResponseError as exc:
        if not Scripts.loaded(exc):
            log.info("Redis refused FUNCTION LOAD (%s): scripts run with EVALSHA", exc)
            return Scripts(False)
    try:  # an ACL may allow FUNCTION LOAD and still refuse FCALL
        await client.execute_command("FCALL", FUNCTIONS["workers"], 1, root, "")  # type: ignore[no-untyped-call]
    except rex.NoPermissionError as exc:
        log.info("Redis refused FCALL (%s): scripts run with EVALSHA", exc)
        return Scripts(False)
    return Scripts(True)


class Lane:
    """One connection of its own for a stream of calls that never overlap (a worker's claims,
    its batches of outcomes, a process's batches of submits: each is sent by one batcher or
    loop, one at a time). It skips the pool's checkout and return, which cost more CPU than
    the whole round trip of a short script. A call that fails or is interrupted drops the
    connection (its reply may still be on the way); the next call opens a new one."""

    def __init__(self, pool: aioredis.ConnectionPool) -> None:
        self._pool = pool
        self._conn: aioredis.Connection | None = None
        self._lock = asyncio.Lock()  # a safety net: the callers are sequential already
        # The read timeout (the connection's socket_timeout): one timer per lane, re-armed
        # when it fires, instead of redis-py's timer per read (~6 us of a ~100 us round trip).
        self._due: float | None = None  # when the call on its way times out
        self._caller: asyncio.Task[Any] | None = None  # the task that waits for its reply
        self._expired: asyncio.Task[Any] | None = None  # a caller cancelled by the timer
        self._watch: asyncio.TimerHandle | None = None

    async def script(
        self, scripts: Scripts, name: str, keys: list[str], args: Sequence[Any]
    ) -> Any:
        """Run one script (loading it first if the server does not know it: a restart)."""
        async with self._lock:
            return await scripts.call(self._call, name, keys, args)

    async def _call(self, *args: Any) -> Any:
        conn = self._conn
        if conn is None:
            conn = self._pool.make_connection()  # type: ignore[no-untyped-call]
            self._conn = conn
        try:
            if not conn.is_connected:  # connect() checks too, but through its retry wrapper
                await conn.connect()
            self._arm(conn.socket_timeout)
            await conn.send_packed_command(conn.pack_command(*args), check_health=False)
            response = await conn.read_response(timeout=math.inf)  # timed by _arm's timer
        except rex.ResponseError:
            raise  # the connection is fine: the server refused the command
        except BaseException:
            self._due = self._caller = None  # before any await: the timer has nothing to cut
            expired, self._expired = self._expired, None
            self._conn = None
            await _drop(conn)
            if expired is not None and not expired.uncancel():  # only the timer cancelled it
                raise rex.TimeoutError("Timeout reading from socket") from None
            raise
        finally:
            self._due = self._caller = None
        if isinstance(response, rex.ResponseError):
            raise response
        return response

    def _arm(self, timeout: float | None) -> None:
        """Bound the call about to be sent by ``timeout`` seconds (None: no bound)."""
        if timeout is None:
            return
        loop = asyncio.get_running_loop()
        self._due, self._caller = loop.time() + timeout, asyncio.current_task()
        if self._watch is None:
            self._watch = loop.call_at(self._due, self._check)

    def _check(self) -> None:
        """The timer: cancel the caller whose call is past its due time, else wait for the
        due time of the call on its way (if any)."""
        self._watch = None
        due, caller = self._due, self._caller
        if due is None or caller is None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < due:
            self._watch = loop.call_at(due, self._check)
        else:
            self._expired, self._due, self._caller = caller, None, None
            caller.cancel()

    async def close(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            await _drop(conn)


async def _drop(conn: aioredis.Connection) -> None:
    try:
        await conn.disconnect(nowait=True)
    except Exception:  # already broken: nothing more to release
        pass


async def run(
    client: aioredis.Redis,
    shown: str,
    call: Callable[[aioredis.Redis], Awaitable[T]],
    *,
    retry: bool = False,
) -> T:
    """Run one Redis call, mapping redis-py errors to offload's. ``retry``: the call is
    safe to repeat, so a broken pooled connection (after a Redis restart) is retried once."""
    for attempt in (1, 2):
        try:
            return await call(client)
        except (rex.ConnectionError, rex.TimeoutError, OSError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and "closed" not in str(exc):
                raise  # a bug, not a broken connection
            if not isinstance(exc, rex.ConnectionError | rex.TimeoutError):
                # Under uvloop a connection the peer reset fails with a RuntimeError
                # ("the handler is closed") that redis-py does not handle: drop the idle
                # connections, so that the next call opens a fresh one.
                await client.connection_pool.disconnect(inuse_connections=False)
            if retry and attempt == 1:
                continue
            raise BackendUnavailable(
                f"Redis at {shown} is unavailable ({exc}); retry later"
            ) from None
        except rex.ResponseError as exc:
            raise BackendError(f"Redis at {shown} refused a command: {exc}") from None
    raise AssertionError("unreachable")
