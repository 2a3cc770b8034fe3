"""Helpers of the Django integration tests."""

from __future__ import annotations

import offload
from conftest import tasks_setting
from offload.core.job import JobRecord

__all__ = ["jobs_in", "tasks_setting"]


def jobs_in(url: str) -> list[JobRecord]:
    """Every job stored at ``url``, read with an App of its own."""
    with offload.App(url) as app:
        return [job.record for job in app.jobs(limit=1000)]
