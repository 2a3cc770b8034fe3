"""Redis for tests: a private namespace on the shared server, or a private ``redis-server``.

The shared server is ``OFFLOAD_TEST_REDIS`` (default ``redis://127.0.0.1:6379/15``; the test
command starts one when none answers). Every namespace a test makes starts with
``offload-test-`` and is deleted at the end of the session that made it (only those: other
test sessions may be running against the same server).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import redis

from upkit import free_port

TEST_REDIS = os.environ.get("OFFLOAD_TEST_REDIS", "redis://127.0.0.1:6379/15")
TEST_PREFIX = "offload-test-"


_made: list[str] = []  # namespaces this process made


def redis_namespace_url(base: str = TEST_REDIS) -> str:
    """A backend URL with a fresh namespace on the shared test server."""
    prefix = f"{TEST_PREFIX}{uuid.uuid4().hex[:12]}"
    _made.append(prefix)
    return f"{base}?prefix={prefix}"


def drop_test_namespaces(base: str = TEST_REDIS) -> int:
    """Delete every key of the namespaces this process made; returns how many."""
    if not _made:
        return 0
    client = redis.Redis.from_url(base)
    try:
        mine = {"{" + prefix + "}" for prefix in _made}
        keys = [
            key
            for key in client.scan_iter(match="{" + TEST_PREFIX + "*", count=5000)
            if key.split(b":", 1)[0].decode() in mine
        ]
        for start in range(0, len(keys), 1000):
            client.unlink(*keys[start : start + 1000])
        _made.clear()
        return len(keys)
    finally:
        client.close()


class RedisServer:
    """A private ``redis-server`` on a free loopback port, for tests that must kill it or need
    AOF. ``start()`` again after ``kill()`` restarts it on the same port and data folder."""

    def __init__(
        self, workdir: Path, *, appendonly: bool = True, extra: tuple[str, ...] = ()
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: apt-get install redis-server")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.appendonly = appendonly
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            *self.extra,
        ]
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 10
        extra = list(self.extra)
        password = extra[extra.index("--requirepass") + 1] if "--requirepass" in extra else None
        client = redis.Redis(port=self.port, password=password, socket_connect_timeout=0.5)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.exceptions.RedisError:
                    pass  # not ready; loading the AOF
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((self.workdir / "redis.log").read_text())
                time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown save, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
