"""A Redis that stops answering: a submit waits at most the URL's ``socket_timeout`` per try
(one try and one retry), then raises BackendUnavailable; once Redis answers again, the next
submit goes through. On both faces: the async lane (its own timer, see ``conn.Lane``) and the
blocking submit of sync callers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis

import offload
from offload.errors import BackendUnavailable
from rediskit import RedisServer

TIMEOUT = 0.3
PAUSE = 2.0  # well over a try and its retry (2 x TIMEOUT), even on a busy machine


@pytest.fixture
def app(server: RedisServer) -> Iterator[offload.App]:
    app = offload.App(f"{server.url}?prefix=timeouts&socket_timeout={TIMEOUT}")
    app.task(name="noop")(lambda: None)
    yield app
    app.close()


def pause(server: RedisServer) -> float:
    """CLIENT PAUSE (every client, PAUSE seconds); returns when it ends (time.monotonic)."""
    with redis.Redis(port=server.port) as admin:
        admin.execute_command("CLIENT", "PAUSE", int(PAUSE * 1000), "ALL")
    return time.monotonic() + PAUSE


def test_a_sync_submit_times_out_then_goes_through(server: RedisServer, app: offload.App) -> None:
    app.submit_many([app.prepare("noop")])  # connected
    ends = pause(server)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="unavailable"):
        app.submit_many([app.prepare("noop")])
    assert 2 * TIMEOUT - 0.05 <= time.monotonic() - started < PAUSE
    time.sleep(max(0.0, ends - time.monotonic()))
    [job] = app.submit_many([app.prepare("noop")])
    assert job.status is offload.State.QUEUED


async def test_an_async_submit_times_out_then_goes_through(
    server: RedisServer, app: offload.App
) -> None:
    await app.asubmit_many([app.prepare("noop")])  # connected
    ends = pause(server)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="unavailable"):
        await app.asubmit_many([app.prepare("noop")])
    assert 2 * TIMEOUT - 0.05 <= time.monotonic() - started < PAUSE
    await asyncio.sleep(max(0.0, ends - time.monotonic()))
    [job] = await app.asubmit_many([app.prepare("noop")])
    assert job.status is offload.State.QUEUED
    # a lane that waited for nothing long past its timeout still answers at once
    await asyncio.sleep(2 * TIMEOUT)
    [job] = await app.asubmit_many([app.prepare("noop")])
    assert job.status is offload.State.QUEUED
    await app.aclose()


async def test_a_slow_reply_within_its_own_timeout_is_not_cut_short(server: RedisServer) -> None:
    """The lane's timer, armed by an earlier call, fires during a later one that is not yet due:
    it waits for that call's own due time instead of cutting it short."""
    app = offload.App(f"{server.url}?prefix=timeouts&socket_timeout=1.0")
    app.task(name="noop")(lambda: None)
    await app.asubmit_many([app.prepare("noop")])  # arms the lane's timer for 1 s from now
    await asyncio.sleep(0.5)
    with redis.Redis(port=server.port) as admin:
        connections = admin.info("stats")["total_connections_received"]
        admin.execute_command("CLIENT", "PAUSE", 600, "ALL")  # the timer fires meanwhile
        started = time.monotonic()
        [job] = await app.asubmit_many([app.prepare("noop")])  # due 1 s after it was sent
        assert time.monotonic() - started >= 0.4
        assert job.status is offload.State.QUEUED
        # the first try went through: a timeout would have dropped the lane's connection and
        # the retry opened another
        assert admin.info("stats")["total_connections_received"] == connections
    await app.aclose()
