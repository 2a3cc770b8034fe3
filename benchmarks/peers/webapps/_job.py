"""The slow job's body, shared by the three apps (standard library and redis-py only)."""

from __future__ import annotations

import os
import time

import redis

RAN = "peers:ran"  # hash on the counter database: job id -> times it ran
_clients: dict[int, redis.Redis] = {}


def seconds() -> float:
    return float(os.environ.get("PEERS_JOB_SECONDS", "0.05"))


def slow_job(job_id: str) -> None:
    """Block for ``seconds()``, then count one run of ``job_id``."""
    time.sleep(seconds())
    client = _clients.get(os.getpid())
    if client is None:
        client = redis.Redis.from_url(os.environ["PEERS_COUNTER_URL"])
        _clients[os.getpid()] = client
    client.hincrby(RAN, job_id, 1)
