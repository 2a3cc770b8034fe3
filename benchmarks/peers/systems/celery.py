"""Celery with its Redis broker, prefork pool (``celery-prefork``) or thread pool
(``celery-threads``).

Every workload runs as a plain function (``time.sleep`` for the sleep). No result backend is
configured and ``task_ignore_result`` is on; everything else is Celery's default.
"""

from __future__ import annotations

import sys

from celery import Celery

from systems._shared import broker_url, run_sync

PACKAGES = ("celery", "kombu", "billiard", "redis", "hiredis")

app = Celery("peers", broker=broker_url())
app.conf.update(
    task_ignore_result=True,  # no result backend at all, and nothing stored per task
    broker_connection_retry_on_startup=True,  # silences a deprecation warning; the default
)


@app.task(name="noop")  # type: ignore[untyped-decorator]
def noop(sent: float) -> None:
    run_sync("noop", sent)


@app.task(name="sleep")  # type: ignore[untyped-decorator]
def sleep(sent: float) -> None:
    run_sync("sleep", sent)


@app.task(name="burn")  # type: ignore[untyped-decorator]
def burn(sent: float) -> None:
    run_sync("burn", sent)


@app.task(name="incr")  # type: ignore[untyped-decorator]
def incr(sent: float) -> None:
    run_sync("incr", sent)


TASKS = {"noop": noop, "sleep": sleep, "burn": burn, "incr": incr}


def pool(config: str) -> str:
    return "threads" if config == "celery-threads" else "prefork"


def knobs(config: str) -> list[str]:
    shape = (
        "1 process, 10 threads"
        if pool(config) == "threads"
        else "1 parent process + 10 forked child processes"
    )
    return [
        f"worker: `celery -A systems.celery worker -P {pool(config)} -c 10 -l WARNING`: {shape}",
        "every workload is a plain function; sleep is `time.sleep(0.01)`",
        "broker: Redis (kombu), default transport options (visibility timeout 1 h)",
        "results: no result backend, `task_ignore_result=True`",
        "defaults kept: `acks_late=False` (a message is acknowledged when a worker receives "
        "it: a job whose worker dies is lost), prefetch multiplier 4 (40 messages), "
        "`-O fair`, gossip, mingle and heartbeat on, JSON serializer",
        "submit: `task.delay(sent)`; no bulk enqueue (a `group` publishes one message per task)",
    ]


def worker(config: str, workload: str, concurrency: int) -> tuple[list[str], dict[str, str]]:
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "systems.celery",
        "worker",
        "-P",
        pool(config),
        "-c",
        str(concurrency),
        "-l",
        "WARNING",
    ]
    return argv, {}


class Client:
    def __init__(self, config: str) -> None:
        self.config = config

    async def open(self) -> None:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=3)

    async def enqueue(self, workload: str, sent: float) -> None:
        TASKS[workload].delay(sent)

    async def close(self) -> None:
        app.pool.force_close_all()
