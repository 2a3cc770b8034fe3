"""The roles API with offload: ``POST /roles`` stores a job and answers in milliseconds.

    uvicorn app:api     # from this folder, beside `offload worker tasks:app` (run.py runs both)

The job runs the four HR queries at once (each in a thread with its own SQLite connection),
then the slow generation step, then saves the role; ``GET /roles/{id}`` shows it once saved.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import db
from offload.integrations.fastapi import accepted, lifespan, mount
from roles import DB
from tasks import app as jobs
from tasks import create_role

JOBS = "/jobs"  # offload's own routes (job, history, live events) are mounted here


class NewRole(BaseModel):
    department: str = Field(min_length=1, max_length=100)
    title: str = Field(min_length=1, max_length=100)
    level: int = Field(ge=1, le=db.LEVELS)


api = FastAPI(title="roles API (offload)", lifespan=lifespan(jobs))  # opens/closes the backend
mount(api, jobs, prefix=JOBS)


@api.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@api.post("/roles", status_code=202)
async def post_role(body: NewRole, request: Request) -> JSONResponse:
    """Check the department (one indexed lookup, in a thread), store the job, answer."""
    if await asyncio.to_thread(db.department_id, DB, body.department) is None:
        raise HTTPException(422, f"no department {body.department!r}")
    job = await create_role.asubmit(body.department, body.title, body.level)
    return accepted(job, request, prefix=JOBS)  # 202, Location: /jobs/{id}


@api.get("/roles/{role_id}")
async def get_role(role_id: str) -> dict[str, Any]:
    """The saved role (its id is its job's id); 404 until the job has saved it."""
    role = await asyncio.to_thread(db.get_role, DB, role_id)
    if role is None:
        raise HTTPException(404, f"no role {role_id} (yet: see {JOBS}/{role_id})")
    return role
