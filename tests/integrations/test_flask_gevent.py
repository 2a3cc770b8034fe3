"""The Flask extension in a real gevent server after ``monkey.patch_all()``.

``gevent_flask_app.py`` runs in a subprocess (monkey patching must come first and stays for
the life of the process); this test is its client over loopback. Under gevent, offload's
synchronous calls must park only the calling greenlet: other requests keep being served.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

import offload

pytestmark = pytest.mark.skipif(
    find_spec("gevent") is None or find_spec("flask") is None,
    reason="needs gevent and flask (the dev extra)",
)

APP = Path(__file__).with_name("gevent_flask_app.py")
T = TypeVar("T")


@dataclass
class Server:
    url: str
    db: Path
    process: asyncio.subprocess.Process

    async def stop(self) -> tuple[int, str]:
        """SIGTERM, then the exit status and everything written to stderr."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.stderr is not None
        stderr = await asyncio.wait_for(self.process.stderr.read(), 20)
        return await asyncio.wait_for(self.process.wait(), 20), stderr.decode()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    db = tmp_path / "jobs.db"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(APP),
        str(db),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        port = int(await asyncio.wait_for(process.stdout.readline(), 30))
        yield Server(f"http://127.0.0.1:{port}", db, process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def timed(aw: Awaitable[T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = await aw
    return time.perf_counter() - started, result


async def test_fifty_concurrent_submits_under_gevent_while_the_server_stays_responsive(
    server: Server,
) -> None:
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=server.url, timeout=20, limits=limits) as client:
        nap = asyncio.create_task(timed(client.get("/nap", params={"seconds": 0.5})))
        submits = [client.post(f"/documents/{i}/render") for i in range(50)]
        answers = await asyncio.gather(*submits)
        napped, slept = await nap

        assert [r.status_code for r in answers] == [202] * 50
        ids = {r.json()["id"] for r in answers}
        assert len(ids) == 50
        assert all(r.headers["Location"] == f"/jobs/{r.json()['id']}" for r in answers)
        # The nap ran beside the submits, not after them: the hub was never held.
        assert slept.status_code == 200
        assert napped < 2.0, f"a 0.5 s gevent.sleep took {napped:.2f} s"

        # While a request sleeps, a read through the blueprint still answers at once.
        nap = asyncio.create_task(timed(client.get("/nap", params={"seconds": 1.0})))
        await asyncio.sleep(0.1)
        read_time, read = await timed(client.get(f"/jobs/{next(iter(ids))}"))
        assert read.status_code == 200
        assert read.json()["status"] == "queued"
        assert read_time < 0.5
        assert not nap.done()
        await nap

        # A view may still run asyncio itself: offload's loop lives in a thread of its own.
        r = await client.get("/asyncio")
        assert (r.status_code, r.json()) == (200, {"answer": "ok"})

        worst_lag = (await client.get("/lag")).json()["worst"]
        assert worst_lag < 0.5, f"the gevent hub was blocked for {worst_lag:.2f} s"

    status, stderr = await server.stop()
    assert status == 0, stderr
    assert "Traceback" not in stderr, stderr

    reader = offload.App(f"sqlite:///{server.db}")
    try:
        stored = await reader.ajobs(limit=100)
        assert {job.id for job in stored} == ids  # every submit was committed
    finally:
        await reader.aclose()
