"""The Redis submit, written once for both faces: SUBMIT's arguments are built and its reply
read without I/O (:func:`submit_args`, :func:`read_reply`); the backend's async lane sends them
for ``await submit(...)``, and :class:`BlockingSubmits` sends them from synchronous code on the
calling thread.

Why a blocking path: a sync caller that goes through the portal (see ``offload._portal``) pays
two thread hand-offs per submit on top of the round trip; on a busy machine each hand-off waits
for a core, which made a sync submit about half as fast as an async one. A submit is one script
call, safe to repeat (an id that already exists is returned as stored), so a blocking
connection on the caller's thread does exactly what the async lane does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import redis
from redis import exceptions as rex
from redis.backoff import NoBackoff
from redis.connection import ConnectionInterface
from redis.retry import Retry

from offload.backends.base import IDEMPOTENCY_WINDOW
from offload.backends.redis.conn import MAX_CONNECTIONS, POOL_WAIT, Scripts, _pack
from offload.backends.redis.records import Blobs, encode_group, submitted
from offload.core.job import JobRecord, NewJob
from offload.errors import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    SerializationError,
)

#: What one submit call gets: its records, or the error it raises.
Outcome = list[JobRecord] | BaseException
#: The calls whose jobs were sent: their place among the outcomes, their jobs, their blobs.
Sent = list[tuple[int, list[NewJob], list[Blobs]]]


def submit_args(
    now_arg: str, groups: Sequence[list[NewJob]]
) -> tuple[list[Any], Sent, list[Outcome]]:
    """SUBMIT's arguments for many submit calls (one group each, all or none). A call whose
    jobs cannot be encoded gets its error among the outcomes at once and is not sent."""
    out: list[Outcome] = []
    sent: Sent = []
    args: list[Any] = [now_arg, repr(IDEMPOTENCY_WINDOW)]
    for jobs in groups:
        try:
            rows, blobs = encode_group(jobs)
        except (ValueError, SerializationError) as exc:
            out.append(exc)
            continue
        sent.append((len(out), jobs, blobs))
        out.append([])
        args.append(orjson.dumps(rows))
    return args, sent, out


def read_reply(root: str, reply: Sequence[Any], sent: Sent, out: list[Outcome]) -> list[Outcome]:
    """The outcomes of the calls :func:`submit_args` sent, filled in from SUBMIT's reply."""
    now = float(reply[0])
    for (slot, jobs, blobs_of_group), group in zip(sent, reply[1:], strict=True):
        out[slot] = submitted(root, jobs, blobs_of_group, group, now)
    return out


class BlockingSubmits:
    """SUBMIT from synchronous code on the calling thread: blocking connections handed to one
    caller at a time (any thread; under gevent's monkey patching their sockets yield to other
    greenlets), the same script, arguments and errors as the async lane. At most
    MAX_CONNECTIONS at once; more callers wait up to POOL_WAIT s. redis-py's client and pool
    cost more CPU than the round trip itself, so only its connections are used."""

    def __init__(
        self, url: str, shown: str, root: str, scripts: Scripts, now_arg: Callable[[], str]
    ) -> None:
        try:
            self._pool = redis.ConnectionPool.from_url(
                url,
                decode_responses=True,
                socket_connect_timeout=5.0,
                socket_timeout=15.0,
                retry=Retry(NoBackoff(), 0),  # retries are ours, as on the async side
            )
        except ValueError as exc:
            raise ConfigurationError(f"invalid Redis URL for {shown}: {exc}") from None
        self._idle: list[ConnectionInterface] = []  # list.pop and append are atomic
        self._room = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._scripts = scripts  # FCALL or EVALSHA, as the backend's async calls
        self._shown, self._root, self._now_arg = shown, root, now_arg
        self.closed = False

    def submit(self, jobs: list[NewJob]) -> list[JobRecord]:
        """Store one call's jobs, all or none, and return them as stored."""
        args, sent, out = submit_args(self._now_arg(), [jobs])
        if sent:
            read_reply(self._root, self._call(args), sent, out)
        [outcome] = out
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _call(self, args: list[Any]) -> Any:
        for attempt in (1, 2):
            if self.closed:
                raise BackendUnavailable("the Redis backend was closed")
            try:
                return self._script(args)
            except (rex.ConnectionError, rex.TimeoutError, OSError) as exc:
                if attempt == 1:
                    continue  # a connection broken by a Redis restart: safe to repeat
                raise BackendUnavailable(
                    f"Redis at {self._shown} is unavailable ({exc}); retry later"
                ) from None
            except rex.ResponseError as exc:
                raise BackendError(f"Redis at {self._shown} refused a command: {exc}") from None
        raise AssertionError("unreachable")

    def _script(self, args: list[Any]) -> Any:
        """SUBMIT on a connection of its own, loading it first if the server does not know it."""
        if not self._room.acquire(timeout=POOL_WAIT):
            raise rex.ConnectionError(f"no free connection after {POOL_WAIT} s")
        try:
            conn = self._idle.pop() if self._idle else self._pool.make_connection()
            try:
                reply = self._submit(conn, args)
            except rex.ResponseError:
                self._idle.append(conn)  # the server refused the command: the connection is fine
                raise
            except BaseException:
                conn.disconnect()  # type: ignore[no-untyped-call]  # a reply may be on its way
                raise
            self._idle.append(conn)
            return reply
        finally:
            self._room.release()

    def _submit(self, conn: ConnectionInterface, args: list[Any]) -> Any:
        scripts, keys = self._scripts, [self._root]
        try:
            return self._send(conn, *scripts.command("submit", keys, args))
        except rex.ResponseError as exc:
            if not scripts.missing(exc):
                raise
        try:  # a restarted server: load the script (or library), once
            self._send(conn, *scripts.load_command("submit"))
        except rex.ResponseError as exc:
            if not scripts.loaded(exc):
                raise
        return self._send(conn, *scripts.command("submit", keys, args))

    @staticmethod
    def _send(conn: ConnectionInterface, *command: Any) -> Any:
        if _pack is None:
            conn.send_command(*command)  # type: ignore[no-untyped-call]
        else:  # redis-py encodes each argument in Python first: ~13 us of a ~90 us submit
            conn.send_packed_command([_pack(command)])  # type: ignore[no-untyped-call]
        return conn.read_response()

    def close(self) -> None:
        self.closed = True
        while self._idle:
            self._idle.pop().disconnect()  # type: ignore[no-untyped-call]
