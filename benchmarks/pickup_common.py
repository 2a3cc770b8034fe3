"""The sampling loop of pickup_bench.py, shared by every system (standard library only: it
also runs in Huey's own virtual environment, without offload)."""

from __future__ import annotations

import json
import os
import random
import socket
import time
from collections.abc import Callable

PORT_ENV = "PICKUP_PORT"  # where a job body sends the time it started (UDP, 127.0.0.1)
PAUSE = (0.02, 0.1)  # random pause between samples, seconds
WARMUP = 5  # jobs run and dropped first: connections, imports, caches
START_TIMEOUT = 30.0

_out: list[socket.socket] = []


def stamp() -> None:
    """Called first thing by a job body: one datagram with the time it started."""
    if not _out:
        _out.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    _out[0].sendto(repr(time.time()).encode(), ("127.0.0.1", int(os.environ[PORT_ENV])))


def listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def started(sock: socket.socket, timeout: float) -> float:
    sock.settimeout(timeout)
    return float(sock.recv(64))


def sample(submit: Callable[[], object], sock: socket.socket, samples: int, seed: int) -> str:
    """``samples`` one-job submits, each after the previous one ran, on an idle worker; JSON
    of {"called": [...], "returned": [...]}: ms from the submit call starting / returning to
    the job body starting."""
    rng = random.Random(seed)
    deadline = time.monotonic() + START_TIMEOUT
    for i in range(WARMUP):  # the first one waits for the worker to serve
        submit()
        started(sock, max(1.0, deadline - time.monotonic()) if i == 0 else 10.0)
        time.sleep(rng.uniform(*PAUSE))
    called, returned = [], []
    for _ in range(samples):
        before = time.time()
        submit()
        after = time.time()
        began = started(sock, 10.0)
        called.append(1000 * (began - before))
        returned.append(1000 * (began - after))
        time.sleep(rng.uniform(*PAUSE))
    return json.dumps({"called": called, "returned": returned})
