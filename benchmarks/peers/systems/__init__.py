"""The systems compared, one adapter module each, and the shape every adapter has.

This package's ``__init__`` uses only the standard library: the harness imports it in its own
interpreter to know which configurations exist and which virtual environment runs each. The
adapter modules themselves (``systems/celery.py`` ...) import their system and are only ever
imported inside that system's environment: by its worker processes and by the client process
(``python -m systems._client CONFIG``) that enqueues for the harness.

An adapter module defines:

- ``PACKAGES``: the distributions whose versions the report names;
- the four tasks (``noop``, ``sleep``, ``burn``, ``incr``), each a thin wrapper over ``_shared``;
- ``knobs(config) -> list[str]``: every setting chosen for the system, for the report;
- ``worker(config, workload, concurrency) -> (argv, extra env)``: how to start its worker;
- ``Client(config)``: ``open``, ``enqueue(workload, sent)``, ``bulk(workload, n)`` (or ``None``
  where the system has no bulk enqueue), ``close``;
- optionally ``scaled(config, workload, concurrency, processes)``: the worker commands of the
  many-processes flow (``--flows scale``), by mode: ``{mode: [{"argv": ..., "env": ...}]}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Venv = Literal["offload", "peers", "arq"]


@dataclass(frozen=True)
class Config:
    """One measured configuration: a system plus the way its worker runs."""

    name: str  # e.g. "celery-prefork"
    module: str  # the adapter, systems/<module>.py
    venv: Venv  # offload: offload's own .venv; peers: .venv-peers; arq: .venv-peers-arq
    label: str  # for tables and charts
    uses_redis: bool = True  # False: offload on SQLite (no Redis memory figure)


CONFIGS: tuple[Config, ...] = (
    Config("offload-redis", "offload", "offload", "offload (Redis)"),
    Config("offload-sqlite", "offload", "offload", "offload (SQLite)", uses_redis=False),
    Config("celery-prefork", "celery", "peers", "Celery (prefork)"),
    Config("celery-threads", "celery", "peers", "Celery (threads)"),
    Config("rq", "rq", "peers", "RQ"),
    Config("dramatiq", "dramatiq", "peers", "Dramatiq"),
    Config("arq", "arq", "arq", "arq"),
    Config("huey", "huey", "peers", "Huey"),
    Config("saq", "saq", "peers", "SAQ"),
    Config("taskiq", "taskiq", "peers", "Taskiq"),
)
BY_NAME = {c.name: c for c in CONFIGS}


class Client(Protocol):
    """The enqueue side of one system, used by ``systems._client`` (one per measured step)."""

    async def open(self) -> None: ...

    async def enqueue(self, workload: str, sent: float) -> None:
        """Enqueue one job of ``workload``; ``sent`` is passed on to the task (0: no sample)."""

    async def close(self) -> None: ...
