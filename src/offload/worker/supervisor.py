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


class Supervisor:
    def __init__(self, child_argv: Sequence[str], processes: int) -> None:
        self.child_argv = list(child_argv)
        self.processes = processes
        self.children: list[subprocess.Popen[bytes]] = []
        self.stopping = False

    def _spawn(self) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(self.child_argv)
        log.info("started worker process %d", child.pid)
        return child

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signum)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._forward)
        self.children = [self._spawn() for _ in range(self.processes)]
        while True:
            alive = False
            for i, child in enumerate(self.children):
                code = child.poll()
                if code is None:
                    alive = True
                elif not self.stopping:
                    log.warning("worker process %d exited with %s; restarting", child.pid, code)
                    time.sleep(RESTART_DELAY)
                    self.children[i] = self._spawn()
                    alive = True
            if not alive:
                return 0
            time.sleep(0.2)
