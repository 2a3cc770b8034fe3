"""BEFORE: the roles API with a hand-written task manager. Kept to measure against ``app.py``.

    uvicorn before:api       # from this folder (run.py --before starts it)

``POST /roles`` hands the work to ``asyncio.create_task`` and answers with a task id, which
looks fast until the work runs: it is on the same event loop, its queries use blocking
``sqlite3`` calls one after another, and the generation step is a blocking SDK call. Each role
freezes the loop for over a second, so the POSTs (and ``GET /health``) wait behind it. Nothing
bounds how many run; statuses live in this process's memory (lost on restart, invisible to a
second process); a crash in a role is a log line at best.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

import db
from roles import DB, GENERATION_SECONDS, describe, role_record


class TaskManager:
    """Background coroutines with their statuses in a dict, behind a lock."""

    def __init__(self) -> None:
        self.statuses: dict[str, dict[str, Any]] = {}
        self.lock = asyncio.Lock()
        self.running: set[asyncio.Task[None]] = set()

    async def start(self, work: Callable[[str], Awaitable[dict[str, Any]]]) -> str:
        task_id = uuid.uuid4().hex
        async with self.lock:
            self.statuses[task_id] = {"status": "running"}
        task = asyncio.create_task(self._run(task_id, work))
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        return task_id

    async def _run(self, task_id: str, work: Callable[[str], Awaitable[dict[str, Any]]]) -> None:
        try:
            result = await work(task_id)
        except Exception as exc:
            async with self.lock:
                self.statuses[task_id] = {"status": "failed", "error": repr(exc)}
        else:
            async with self.lock:
                self.statuses[task_id] = {"status": "succeeded", "result": result}

    async def get(self, task_id: str) -> dict[str, Any] | None:
        async with self.lock:
            return self.statuses.get(task_id)


class NewRole(BaseModel):
    department: str = Field(min_length=1, max_length=100)
    title: str = Field(min_length=1, max_length=100)
    level: int = Field(ge=1, le=db.LEVELS)


api = FastAPI(title="roles API (before)")
manager = TaskManager()


async def build_role(role_id: str, department: str, title: str, level: int) -> dict[str, Any]:
    headcount = db.headcount(DB, department)  # blocking calls, one after another, on the loop
    band = db.salary_band(DB, title, level)
    skills = db.top_skills(DB, title)
    similar = db.similar_roles(DB, department, title)
    time.sleep(GENERATION_SECONDS)  # noqa: ASYNC251 (on purpose: a synchronous model SDK call)
    description = describe(department, title, level, headcount, band, skills, similar)
    role = role_record(role_id, department, title, level, band, skills, description)
    db.save_role(DB, role)
    return role


@api.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@api.post("/roles", status_code=202)
async def post_role(body: NewRole) -> dict[str, str]:
    if db.department_id(DB, body.department) is None:
        raise HTTPException(422, f"no department {body.department!r}")
    task_id = await manager.start(
        lambda role_id: build_role(role_id, body.department, body.title, body.level)
    )
    return {"task_id": task_id, "status_url": f"/roles/tasks/{task_id}"}


@api.get("/roles/tasks/{task_id}")
async def get_task(task_id: str) -> dict[str, Any]:
    status = await manager.get(task_id)
    if status is None:
        raise HTTPException(404, f"no task {task_id} (in this process)")
    return status
