"""``python manage.py offload_worker``: run the project's Django tasks (and offload's own)."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from offload.errors import OffloadError
from offload.integrations.django.worker import WorkerOptions, run_worker


class Command(BaseCommand):  # type: ignore[misc]  # Django is untyped
    help = (
        "Run an offload worker for a TASKS backend: it runs Django tasks with the project set "
        "up and fresh database connections around every job. Options as `offload worker`."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--alias", default="default", help="TASKS entry to serve (default)")
        parser.add_argument(
            "--queues",
            help="comma-separated queues, each optionally capped: pdf:2,default "
            "(default: the entry's QUEUES and its tasks' queues)",
        )
        parser.add_argument("--concurrency", type=int, help="job slots per process (default 10)")
        parser.add_argument("--processes", type=int, default=1, help="worker processes (1)")
        parser.add_argument("--name", help="worker name, shown in job history (default: host)")
        parser.add_argument("--lease", type=float, help="lease seconds (default 30)")
        parser.add_argument("--shutdown-grace", type=float, help="seconds to drain on SIGTERM")
        parser.add_argument(
            "--strict",
            action="store_true",
            help="refuse to start if the backend's server may lose jobs (default: warn)",
        )
        parser.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        names = WorkerOptions.__dataclass_fields__
        chosen = {k: v for k, v in options.items() if k in names and v is not None}
        if chosen.get("processes", 1) < 1:
            raise CommandError(f"--processes must be at least 1, not {chosen['processes']}")
        try:
            run_worker(WorkerOptions(**chosen))
        except (OffloadError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
