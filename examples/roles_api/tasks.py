"""The roles API's job: query the HR database (four queries at once), then write the role.

The workers run it: ``offload worker tasks:app`` from this folder (``run.py`` starts one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import db
import offload
from roles import DB, GENERATION_SECONDS, describe, role_record

T = TypeVar("T")

app = offload.App()  # $OFFLOAD_BACKEND (run.py sets it), else sqlite:///offload.db


@app.task(timeout=60, retries=2)
async def create_role(department: str, title: str, level: int) -> dict[str, Any]:
    """Query, generate, save. Progress after each; the timings show the queries overlapped."""
    job = offload.current()
    job.progress(0.1, "querying the HR database")
    timings: dict[str, float] = {}

    async def query(name: str, fn: Callable[..., T], *args: Any) -> T:
        began = time.perf_counter()
        try:
            return await asyncio.to_thread(fn, DB, *args)  # its own connection, in a thread
        finally:
            timings[name] = round((time.perf_counter() - began) * 1000, 1)

    began = time.perf_counter()
    headcount, band, skills, similar = await asyncio.gather(
        query("headcount", db.headcount, department),
        query("salary_band", db.salary_band, title, level),
        query("top_skills", db.top_skills, title),
        query("similar_roles", db.similar_roles, department, title),
    )
    timings["all_queries"] = round((time.perf_counter() - began) * 1000, 1)
    job.progress(0.4, "generating the description")
    await asyncio.sleep(GENERATION_SECONDS)  # the model call, awaited: the loop serves others
    description = describe(department, title, level, headcount, band, skills, similar)
    role = role_record(job.id, department, title, level, band, skills, description)
    await asyncio.to_thread(db.save_role, DB, role)
    job.progress(1.0, "saved")
    return {**role, "similar_roles": similar, "timings_ms": timings}
