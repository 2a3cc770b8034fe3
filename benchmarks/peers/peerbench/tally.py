"""The harness's completion tally: a UDP socket on 127.0.0.1 that counts finished jobs.

Every task of every system sends one datagram when it finishes (``systems._shared.tally``).
A thread here counts them and stamps the first and the latest arrival, so end-to-end
throughput is (count - 1) / (latest - first) for every system alike. The receive buffer is
made large (16 MiB: ``SO_RCVBUFFORCE`` as root) so that no datagram is dropped while this
thread waits for the CPU; a lost one would show as a drain that never completes.
"""

from __future__ import annotations

import socket
import threading
import time


class Tally:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if option is None:
                continue
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, option, 16 * 2**20)
                break
            except OSError:
                continue
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self._lock = threading.Lock()
        self.count, self.first, self.last = 0, 0.0, 0.0
        self._thread = threading.Thread(target=self._receive, name="tally", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while True:
            try:
                self.sock.recv(16)
            except OSError:
                return  # closed
            now = time.time()
            with self._lock:
                if self.count == 0:
                    self.first = now
                self.count += 1
                self.last = now

    def reset(self) -> None:
        with self._lock:
            self.count, self.first, self.last = 0, 0.0, 0.0

    def read(self) -> tuple[int, float, float]:
        """(jobs counted, first arrival, latest arrival), times from time.time()."""
        with self._lock:
            return self.count, self.first, self.last

    def close(self) -> None:
        self.sock.close()
