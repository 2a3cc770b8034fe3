"""A private ``redis-server`` on a free loopback port, started for one harness run.

Persistence is the same for every system: an append-only file with ``appendfsync everysec``
(what offload's documentation asks of a production Redis), no RDB snapshots, and no automatic
AOF rewrite (the harness rewrites the then empty file itself between steps, so that a
background rewrite never lands in the middle of a measurement).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

SETTINGS = (
    ("appendonly", "yes"),
    ("appendfsync", "everysec"),
    ("save", ""),
    ("auto-aof-rewrite-percentage", "0"),
    ("maxmemory-policy", "noeviction"),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """``with RedisServer(folder) as server:``: started on entry, shut down on exit."""

    def __init__(self, folder: Path, binary: str = "redis-server") -> None:
        found = shutil.which(binary)
        if found is None:
            raise RuntimeError(f"{binary} not found (Debian: apt-get install redis-server)")
        self.binary, self.folder, self.port = found, folder, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis.from_url(self.url(db))

    def __enter__(self) -> RedisServer:
        argv = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.folder),
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str(self.folder / "redis.log"),
        ]
        for name, value in SETTINGS:
            argv += [f"--{name}", value]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with self.client() as c:
                    c.ping()
                break
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        try:
            with self.client() as c:
                c.shutdown(nosave=True)
        except redis.RedisError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def info(self) -> dict[str, Any]:
        with self.client() as c:
            return dict(c.info("server"))

    def cpu(self) -> float:
        """CPU seconds the server has used: ``INFO cpu`` used_cpu_sys + used_cpu_user."""
        with self.client() as c:
            info = c.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    def used_memory(self) -> int:
        with self.client() as c:
            return int(c.info("memory")["used_memory"])

    def reset(self) -> None:
        """Empty every database, then rewrite the (now empty) AOF so that it stays small."""
        with self.client() as c:
            c.flushall()
            c.bgrewriteaof()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                info = c.info("persistence")
                if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
                    break
                time.sleep(0.02)
