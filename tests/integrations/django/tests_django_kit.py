"""Helpers of the Django integration tests."""

from __future__ import annotations

from pathlib import Path

import offload
from offload.core.job import JobRecord

PROJECT = Path(__file__).parent / "djproject"


def jobs_in(url: str) -> list[JobRecord]:
    """Every job stored at ``url``, read with an App of its own."""
    with offload.App(url) as app:
        return [job.record for job in app.jobs(limit=1000)]


def tasks_setting(url: str, **options: object) -> dict[str, object]:
    """The project's TASKS with offload's backend at ``url`` and these OPTIONS."""
    from django.conf import settings

    return {
        "default": {
            "BACKEND": "offload.integrations.django.OffloadBackend",
            "QUEUES": ["default", "reports"],
            "OPTIONS": {"backend": url, **options},
        },
        "inline": settings.TASKS["inline"],
    }
