"""Client CPU of one round trip to Redis, by how the client waits for the reply (issue 22 item 1).

Run from the repository root, on a Redis of your own::

    .venv/bin/python benchmarks/wait_cost.py --redis redis://127.0.0.1:6441/0 --calls 3000

Every variant sends the same command, a Lua loop that keeps the server busy for about as long as
a one-job SUBMIT (``--spin`` iterations), and does no other work, so the figures are what the
wait itself costs the client (``time.process_time`` per call): a blocking socket (as the sync
submit's connection, in Python's timeout mode), a bare asyncio protocol (the least any asyncio
client pays), and redis-py's asyncio connection as the backend's lanes use it (offload's
``PackedConnection``: hiredis packing, no ``wait_for`` per write), reading with redis-py's timer
per read or with none (``timeout=math.inf``, the lanes' way since round three).
Variants alternate, ``--rounds`` times; the table gives the minimum and median per variant.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import hiredis
import redis.asyncio as aioredis

from offload.backends.redis.conn import PackedConnection


class Replies(asyncio.Protocol):
    """Resolves one future per reply: no stream, no timer."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: asyncio.Future[Any] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        reply = self.reader.gets()
        if reply is not False and self.waiting is not None:
            self.waiting.set_result(reply)


def blocking_round(host: str, port: int, packed: bytes, calls: int) -> float:
    with socket.create_connection((host, port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(15.0)
        reader, buffer = hiredis.Reader(), bytearray(65536)
        started = time.process_time()
        for _ in range(calls):
            sock.sendall(packed)
            reply: Any = False
            while reply is False:
                reader.feed(buffer, 0, sock.recv_into(buffer))
                reply = reader.gets()
        return (time.process_time() - started) / calls * 1e6


async def timed(call: Callable[[], Awaitable[Any]], calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - started) / calls * 1e6


async def main(args: argparse.Namespace) -> None:
    url = aioredis.connection.parse_url(args.redis)
    host, port = url.get("host", "127.0.0.1"), url.get("port", 6379)
    command = ("EVAL", f"local i = 0 while i < {args.spin} do i = i + 1 end return 1", "0")
    packed = hiredis.pack_command(command)
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(Replies, host, port)
    conn = PackedConnection(host=host, port=port, socket_timeout=15.0)
    await conn.connect()

    async def bare() -> Any:
        assert proto.transport is not None
        proto.waiting = loop.create_future()
        proto.transport.write(packed)
        return await proto.waiting

    async def redis_py(timeout: float | None) -> Any:
        await conn.send_packed_command([packed], check_health=False)
        return await conn.read_response(timeout=timeout)

    variants: dict[str, Callable[[], Awaitable[float]]] = {
        "blocking socket (sync submit)": lambda: asyncio.to_thread(
            blocking_round, host, port, packed, args.calls
        ),
        "asyncio protocol, bare": lambda: timed(bare, args.calls),
        "lane connection, timer per read": lambda: timed(lambda: redis_py(None), args.calls),
        "lane connection, no timer": lambda: timed(lambda: redis_py(math.inf), args.calls),
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, run in variants.items():
            results[name].append(await run())
    await conn.disconnect()
    print("| how the client waits | client CPU per call, min (us) | median (us) |")
    print("|---|---:|---:|")
    for name, values in results.items():
        print(f"| {name} | {min(values):.1f} | {statistics.median(values):.1f} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--spin", type=int, default=3000, help="Lua loop iterations per call")
    asyncio.run(main(p.parse_args()))
