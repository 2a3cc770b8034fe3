"""Dramatiq with its Redis broker: 2 worker processes of 5 threads each (10 slots).

Dramatiq's own default is one process per core with 8 threads each; 2 x 5 keeps that shape
on this 2-core machine at the common concurrency of 10. Every workload runs as a plain
function (``time.sleep`` for the sleep); no Results middleware (Dramatiq's default).
"""

from __future__ import annotations

import sys

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from systems._shared import broker_url, run_sync

PACKAGES = ("dramatiq", "redis", "hiredis")
PROCESSES = 2

broker = RedisBroker(url=broker_url())  # type: ignore[no-untyped-call]
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="noop")
def noop(sent: float) -> None:
    run_sync("noop", sent)


@dramatiq.actor(actor_name="sleep")
def sleep(sent: float) -> None:
    run_sync("sleep", sent)


@dramatiq.actor(actor_name="burn")
def burn(sent: float) -> None:
    run_sync("burn", sent)


@dramatiq.actor(actor_name="incr")
def incr(sent: float) -> None:
    run_sync("incr", sent)


ACTORS = {"noop": noop, "sleep": sleep, "burn": burn, "incr": incr}


def knobs(config: str) -> list[str]:
    return [
        "worker: `dramatiq systems.dramatiq --processes 2 --threads 5`: a supervisor, 2 worker "
        "processes of 5 threads each (Dramatiq's default shape, one process per core)",
        "every workload is a plain function; sleep is `time.sleep(0.01)`",
        "broker: `RedisBroker`, defaults (acknowledged after the actor ran: at-least-once; "
        "prefetch 2 x threads; heartbeats and requeue of dead workers' messages)",
        "results: no Results middleware (default middleware only); default retries (none "
        "are needed: no job fails)",
        "submit: `actor.send(sent)`; no bulk enqueue (a `group` sends one message per actor)",
    ]


def worker(config: str, workload: str, concurrency: int) -> tuple[list[str], dict[str, str]]:
    threads = max(1, concurrency // PROCESSES)
    argv = [
        sys.executable,
        "-m",
        "dramatiq",
        "systems.dramatiq",
        "--processes",
        str(PROCESSES),
        "--threads",
        str(threads),
    ]
    return argv, {}


def scaled(
    config: str, workload: str, concurrency: int, processes: int
) -> dict[str, list[dict[str, object]]]:
    """The many-processes flow: ``--processes N --threads C`` (C slots per process, as
    offload's ``--processes N --concurrency C``)."""
    argv = [sys.executable, "-m", "dramatiq", "systems.dramatiq"]
    argv += ["--processes", str(processes), "--threads", str(concurrency)]
    return {"processes": [{"argv": argv, "env": {}}]}


class Client:
    def __init__(self, config: str) -> None:
        self.config = config

    async def open(self) -> None:
        broker.client.ping()

    async def enqueue(self, workload: str, sent: float) -> None:
        ACTORS[workload].send(sent)

    async def close(self) -> None:
        return None
