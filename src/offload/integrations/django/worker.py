"""Running an offload worker inside a Django project (what ``manage.py offload_worker`` does)."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from typing import Any

from django.db import connections

from offload import console
from offload.integrations.django.backend import OffloadBackend, offload_backend
from offload.logs import configure_logging
from offload.settings import Settings
from offload.worker.worker import Worker


@dataclass(frozen=True)
class WorkerOptions:
    """The options of ``offload worker``, plus the ``TASKS`` alias to serve."""

    alias: str = "default"
    queues: str | None = None
    concurrency: int | None = None
    processes: int = 1
    name: str | None = None
    lease: float | None = None
    shutdown_grace: float | None = None
    strict: bool = False
    parent_pid: int | None = None

    def child_argv(self) -> list[str]:
        """The command line of one child of ``--processes N``: this command, with one process."""
        argv = [
            sys.executable,
            os.path.abspath(sys.argv[0]),
            "offload_worker",
            "--alias",
            self.alias,
            "--processes",
            "1",
            "--parent-pid",
            str(os.getpid()),
        ]
        for flag, value in (
            ("--queues", self.queues),
            ("--concurrency", self.concurrency),
            ("--name", self.name),
            ("--lease", self.lease),
            ("--shutdown-grace", self.shutdown_grace),
        ):
            if value is not None:
                argv += [flag, str(value)]
        return argv + (["--strict"] if self.strict else [])


def run_worker(options: WorkerOptions) -> int:
    """Serve the alias's queues until SIGTERM/SIGINT (several processes with ``processes``)."""
    if options.strict:
        os.environ["OFFLOAD_STRICT"] = "1"  # reaches every App built here and in children
    settings = Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    backend = offload_backend(options.alias)
    if options.processes > 1:
        from offload.worker.supervisor import Supervisor

        return Supervisor(options.child_argv(), options.processes).run()
    worker = build_worker(backend, options)
    connections.close_all()  # set-up may have opened some; jobs open their own

    async def serve() -> None:
        worker.install_signal_handlers()
        await worker.run()

    asyncio.run(serve())
    return 0


def build_worker(backend: OffloadBackend, options: WorkerOptions) -> Worker:
    """A worker for the backend's App with its Django tasks registered; by default it serves
    the backend's ``QUEUES`` and the queues of the App's tasks."""
    specs = backend.catalog.discover(backend.alias)
    app = backend.app
    if options.queues:
        queues = console.parse_queues(options.queues)
    else:
        names = set(backend.queues) | {s.queue for s in specs} | {s.queue for s in app.registry}
        queues = dict.fromkeys(sorted(names or {"default"}))
    overrides: dict[str, Any] = {
        "lease_seconds": options.lease,
        "shutdown_grace": options.shutdown_grace,
    }
    if options.lease is not None:
        overrides["renew_interval"] = overrides["reap_interval"] = options.lease / 3
    return Worker(
        app,
        queues=queues,
        concurrency=options.concurrency,
        name=options.name,
        app_path=backend.config.app,
        settings=app.settings.with_(**overrides),
        parent_pid=options.parent_pid,
        child_setup="django:setup",
    )
