"""``offload worker --processes N``: N worker processes under one supervisor.

Each child is a full worker (its own loop, slots and lease keeper). The supervisor forwards
SIGTERM/SIGINT to the children, restarts a child that dies unexpectedly (a new incarnation id;
its jobs come back after their leases expire), and exits when every child has stopped.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger("offload.supervisor")

RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 60.0


class Supervisor:
    def __init__(self, child_argv: Sequence[str], processes: int) -> None:
        self.child_argv = list(child_argv)
        self.processes = processes
        self.children: list[subprocess.Popen[bytes]] = []
        self.stopping = False
        self.started: list[float] = []
        self.quick_exits: list[int] = []

    def _spawn(self) -> subprocess.Popen[bytes]:
        # Its own process group: Ctrl-C reaches only the supervisor, which forwards it once.
        child = subprocess.Popen(self.child_argv, process_group=0)
        log.info("started worker process %d", child.pid)
        return child

    def _backoff(self, i: int) -> float:
        """Restart at once after a long run; back off (up to a minute) after quick crashes."""
        if time.monotonic() - self.started[i] > MAX_RESTART_DELAY:
            self.quick_exits[i] = 0
        self.quick_exits[i] += 1
        return float(min(MAX_RESTART_DELAY, RESTART_DELAY * 2 ** (self.quick_exits[i] - 1)))

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signum)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._forward)
        self.children = [self._spawn() for _ in range(self.processes)]
        self.started = [time.monotonic()] * self.processes
        self.quick_exits = [0] * self.processes
        restart_at: dict[int, float] = {}  # slot -> when to start its replacement
        while True:
            alive = False
            for i, child in enumerate(self.children):
                code = child.poll()
                if code is None:
                    alive = True
                elif self.stopping:
                    restart_at.pop(i, None)
                elif i not in restart_at:
                    delay = self._backoff(i)
                    log.warning(
                        "worker process %d exited with %s; restarting in %.0fs",
                        child.pid,
                        code,
                        delay,
                    )
                    restart_at[i] = time.monotonic() + delay
                    alive = True
                elif time.monotonic() >= restart_at[i]:
                    del restart_at[i]
                    self.children[i] = self._spawn()
                    self.started[i] = time.monotonic()
                    alive = True
                else:
                    alive = True  # waiting to restart it; a stop signal cancels the restart
            if not alive:
                return 0
            time.sleep(0.1)
