"""A small TCP proxy for network faults between offload processes and Redis (loopback only).

It listens on a free loopback port and forwards every connection to ``target``, on a thread of
its own with its own event loop. Two faults:

- :meth:`Proxy.blackhole`: every byte, in both directions, is held back (and new connections are
  accepted but not forwarded) until :meth:`Proxy.heal`; then everything held is delivered in
  order. That is what a network partition shorter than TCP's own timeouts looks like: nothing
  arrives, then everything does. A client that gave up in the meantime has closed its socket,
  but what it had sent is still delivered, as the kernel would.
- :meth:`Proxy.reset`: every open connection is closed at once with a TCP RST, in both
  directions (a reply in flight is lost; the request may or may not have run).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from concurrent.futures import Future

from upkit import free_port

#: SO_LINGER on, timeout 0: close() sends RST instead of FIN.
_RST = struct.pack("ii", 1, 0)


class Proxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="netproxy", daemon=True)
        self._open: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    # -- control (from the test's thread) ------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        self._call(self._start()).result(10)

    def blackhole(self) -> None:
        """Hold back everything until :meth:`heal`."""
        self._loop.call_soon_threadsafe(self._gate().clear)

    def heal(self) -> None:
        self._loop.call_soon_threadsafe(self._gate().set)

    def reset(self) -> int:
        """Close every open connection with RST; returns how many sockets were reset."""
        return self._call(self._reset()).result(10)

    def connections_open(self) -> int:
        """Sockets the proxy holds open now (client and Redis sides)."""
        return len(self._writers)

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._close()).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def _call(self, coro: object) -> Future[int]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]

    def _gate(self) -> asyncio.Event:
        assert self._open is not None, "the proxy is not started"
        return self._open

    # -- the proxy (on its own loop) -----------------------------------------------------------
    async def _start(self) -> int:
        self._open = asyncio.Event()
        self._open.set()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.connections += 1
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            await self._gate().wait()  # a connection made in a blackhole hangs
            up_reader, upstream = await asyncio.open_connection(*self.target)
            self._writers.add(upstream)
            await asyncio.gather(self._pipe(reader, upstream), self._pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # reset, or cancelled by close(): a task that ends quietly
        finally:
            for w in (writer, upstream):
                if w is not None:
                    self._writers.discard(w)
                    w.close()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                await self._gate().wait()  # held back during a blackhole, then delivered
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof():
                dst.write_eof()
        except OSError:
            dst.close()

    async def _reset(self) -> int:
        writers = list(self._writers)
        for w in writers:
            sock = w.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
                except OSError:
                    pass
            w.transport.abort()
        return len(writers)

    async def _close(self) -> int:
        if self._server is not None:
            self._server.close()
        self._gate().set()
        await self._reset()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        return 0
