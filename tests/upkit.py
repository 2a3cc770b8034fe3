"""Helpers for tests that run a real ``offload up`` process (fixture: ``offload_up``)."""

from __future__ import annotations

import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningUp:
    """A real ``offload up`` process serving ``base``."""

    proc: subprocess.Popen[bytes]
    base: str
    log: Path

    def stop(self) -> None:
        """SIGINT, as Ctrl-C does; it must exit cleanly."""
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.wait(20) == 0, self.log.read_text()
