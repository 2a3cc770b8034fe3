"""Fixtures for the examples' tests: run an example's ``run.py`` as a user would.

``run_example("content_api")`` starts ``examples/content_api/run.py`` on a free loopback port
with its data in the test's temporary folder, waits until the web app answers, and stops it at
the end with SIGINT (as Ctrl-C does). Every process it started must be gone afterwards.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from launcher import EXAMPLES, PYTHON, descendants, free_port

STARTED = re.compile(r"^started (\S+) \(pid (\d+)\)$", re.MULTILINE)


@dataclass
class RunningExample:
    """An example's ``run.py`` process, serving ``base``."""

    proc: subprocess.Popen[bytes]
    base: str
    data: Path
    log: Path

    def children(self) -> dict[str, int]:
        """The processes ``run.py`` started, by name (from the lines it prints)."""
        return {name: int(pid) for name, pid in STARTED.findall(self.log.read_text())}

    def stop(self, timeout: float = 40.0) -> int:
        """SIGINT, as Ctrl-C does; returns run.py's exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"run.py did not stop:\n{self.log.read_text()}") from None


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


RunExample = Callable[..., RunningExample]


@pytest.fixture
def run_example(tmp_path: Path) -> Iterator[RunExample]:
    """Start ``examples/NAME/run.py ARGS...`` with ``--port`` and ``--data``; stopped at the end."""
    started: list[RunningExample] = []

    def start(
        name: str, *args: str, ready: str = "/health", timeout: float = 40.0
    ) -> RunningExample:
        port = free_port()
        data = tmp_path / f"{name}-data"
        log = tmp_path / f"{name}-{len(started)}.log"
        argv = [PYTHON, str(EXAMPLES / name / "run.py"), "--port", str(port), "--data", str(data)]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*argv, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        running = RunningExample(proc, f"http://127.0.0.1:{port}", data, log)
        started.append(running)
        deadline = time.monotonic() + timeout
        while "Ctrl-C stops everything" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{name}/run.py did not start:\n{log.read_text()}")
            time.sleep(0.1)
        assert httpx.get(running.base + ready, timeout=10).status_code == 200
        return running

    yield start
    for running in started:
        tree = descendants(running.proc.pid)  # its servers, workers and their children
        status = running.stop()
        leftover = [pid for pid in tree if alive(pid)]
        for pid in leftover:
            os.kill(pid, signal.SIGKILL)  # never leave a process behind, even when failing
        assert status == 0, running.log.read_text()
        assert not leftover, f"still running after run.py stopped: {leftover}"
