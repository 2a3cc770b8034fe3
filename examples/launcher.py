"""Start an example's processes on 127.0.0.1, wait until each answers, stop them all on Ctrl-C.

Every ``run.py`` in these examples is a few calls on :class:`Launcher`. Each process runs in a
session of its own, so Ctrl-C reaches only the launcher, which then stops the processes in the
reverse order of their start (the web server first, then the workers, which finish or release
their jobs, then the helper servers), each with SIGTERM, and waits for each to exit.

The tests use the same class, and :func:`tree_rss` / :func:`descendants` to watch memory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO

import httpx

EXAMPLES = Path(__file__).resolve().parent
PYTHON = sys.executable


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    """A started process: its name, its ``Popen`` and the address it answers on (if any)."""

    name: str
    popen: subprocess.Popen[bytes]
    ready: str | None

    @property
    def pid(self) -> int:
        return self.popen.pid


class Launcher:
    """The processes of one example, stopped together (``with Launcher() as launcher:``).

    ``env`` is laid over this process's environment for every child; ``output`` receives their
    stdout and stderr (default: this process's own).
    """

    def __init__(self, *, env: Mapping[str, str] | None = None, output: IO[bytes] | None = None):
        self.env = {**os.environ, **(env or {})}
        self.output = output
        self.processes: list[Process] = []
        self._stop = threading.Event()

    def __enter__(self) -> Launcher:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        ready: str | None = None,
        timeout: float = 30.0,
    ) -> Process:
        """Start ``argv`` in ``cwd``; with ``ready`` (``http://...`` or ``tcp://host:port``),
        wait until it answers there. :raises RuntimeError: it exited or never answered."""
        popen = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env={**self.env, **(env or {})},
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            stderr=self.output,
        )
        process = Process(name, popen, ready)
        self.processes.append(process)
        if ready is not None:
            wait_ready(process, timeout)
        return process

    def worker(self, name: str, cwd: Path, *, concurrency: int, app: str = "tasks:app") -> Process:
        """``offload worker APP`` in ``cwd`` with ``concurrency`` slots."""
        argv = [
            PYTHON,
            "-m",
            "offload",
            "worker",
            app,
            "--concurrency",
            str(concurrency),
            "--name",
            name,
        ]
        return self.start(name, argv, cwd=cwd)

    def uvicorn(self, cwd: Path, app: str, port: int, *, name: str = "web") -> Process:
        """``uvicorn APP`` in ``cwd`` on 127.0.0.1:``port``, ready once ``/health`` answers."""
        argv = [
            PYTHON,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ]
        return self.start(name, argv, cwd=cwd, ready=f"http://127.0.0.1:{port}/health")

    def announce(self, what: str, url: str, data: Path) -> None:
        """Print what runs where (the tests read these lines too)."""
        for p in self.processes:
            print(f"started {p.name} (pid {p.pid})", flush=True)
        print(f"{what}: {url}; data in {data}; Ctrl-C stops everything", flush=True)

    def stop(self, process: Process, *, timeout: float = 30.0, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and wait for the exit (SIGKILL after ``timeout``); return its status.

        Whatever the process left behind in its process group (a stuck child, say) is killed.
        """
        if process.popen.poll() is None:
            process.popen.send_signal(sig)
            try:
                process.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
        with contextlib.suppress(ProcessLookupError):  # its group: it led a session of its own
            os.killpg(process.pid, signal.SIGKILL)
        if process in self.processes:
            self.processes.remove(process)
        return process.popen.returncode

    def close(self) -> None:
        """Stop every process, the last started first."""
        for process in reversed(list(self.processes)):
            self.stop(process)

    def wait(self) -> int:
        """Block until Ctrl-C (SIGINT) or SIGTERM, or until a process exits; then stop them all.

        Returns 0 after a signal, 1 if a process ended by itself.
        """

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self._stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        status = 0
        while not self._stop.wait(0.25):
            ended = [p for p in self.processes if p.popen.poll() is not None]
            if ended:
                for p in ended:
                    print(f"{p.name} (pid {p.pid}) exited with {p.popen.returncode}", flush=True)
                status = 1
                break
        print("stopping...", flush=True)
        self.close()
        return status


def wait_ready(process: Process, timeout: float) -> None:
    """Poll ``process.ready`` until it answers. :raises RuntimeError: exit or timeout."""
    assert process.ready is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited with {process.popen.returncode} at start")
        if _answers(process.ready):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{process.name} did not answer on {process.ready} within {timeout:g}s")


def _answers(address: str) -> bool:
    if address.startswith("tcp://"):
        host, _, port = address.removeprefix("tcp://").rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
        except OSError:
            return False
        return True
    try:
        return httpx.get(address, timeout=2).status_code < 500
    except httpx.TransportError:
        return False


# -- memory, for the tests and bench.py (Linux /proc) --------------------------------------------
def descendants(pid: int) -> list[int]:
    """``pid``'s children, grandchildren and so on (read from /proc; [] elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            # the command name may hold spaces and parentheses: the fields follow the last ")"
            fields = entry.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # it ended meanwhile
        children.setdefault(int(fields[1]), []).append(int(entry.parent.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def rss_mib(pid: int) -> float:
    """Resident memory of one process in MiB (0.0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_rss(pid: int) -> tuple[float, int]:
    """Resident memory of ``pid`` and all its descendants in MiB, and how many processes."""
    pids = [pid, *descendants(pid)]
    return sum(rss_mib(p) for p in pids), len(pids)
