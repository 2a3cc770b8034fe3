"""The content API with offload: every slow step runs in a job; the POST answers in milliseconds.

    uvicorn app:api     # from this folder, beside `offload worker tasks:app` (run.py runs both)

``POST /creators/{id}/content`` stores a two-step workflow (write the post, then e-mail the
creator) and answers 202 with the job; its progress streams from ``/jobs/{id}/events``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import offload
import store
from offload.integrations.fastapi import accepted, lifespan, mount
from tasks import app as jobs
from tasks import config, post_workflow

JOBS = "/jobs"  # offload's own routes (job, history, live events) are mounted here


class NewCreator(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=200)
    niche: str = Field(default="", max_length=200)


class NewContent(BaseModel):
    topic: str = Field(min_length=1, max_length=200)


@asynccontextmanager
async def startup(api: FastAPI) -> AsyncIterator[None]:
    await asyncio.to_thread(store.create_schema, config.db)
    async with lifespan(jobs)(api):  # opens the job backend, closes it at the end
        yield


api = FastAPI(title="content API (offload)", lifespan=startup)
mount(api, jobs, prefix=JOBS)


@api.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@api.post("/creators", status_code=201)
async def create_creator(body: NewCreator) -> store.Creator:
    return await asyncio.to_thread(store.add_creator, config.db, body.name, body.email, body.niche)


@api.get("/creators/{creator_id}")
async def get_creator(creator_id: int) -> store.Creator:
    creator = await asyncio.to_thread(store.get_creator, config.db, creator_id)
    if creator is None:
        raise HTTPException(404, f"no creator {creator_id}")
    return creator


@api.post("/creators/{creator_id}/content", status_code=202)
async def create_content(creator_id: int, body: NewContent, request: Request) -> JSONResponse:
    """Store the workflow and answer: a few milliseconds, whatever the steps take."""
    await get_creator(creator_id)  # 404 now rather than a failed job later
    workflow = await jobs.asubmit_workflow(post_workflow(creator_id, body.topic))
    first = await jobs.aget_job(workflow.id)  # the workflow's id is its first step's job id
    response = accepted(first, request, prefix=JOBS)
    response.headers["Location"] = f"/content/{workflow.id}"
    return response


@api.get("/content/{content_id}")
async def get_content(content_id: str) -> dict[str, Any]:
    """The workflow's status, each step's status and progress, and the post once written."""
    try:
        workflow = await jobs.aworkflow(content_id)
    except offload.JobNotFound:
        raise HTTPException(404, f"no content {content_id}") from None
    status, steps = await workflow.asnapshot()  # one read: the status and steps agree
    return {
        "id": workflow.id,
        "status": status,
        "events": f"{JOBS}/{workflow.id}/events",
        "steps": [None if job is None else step_view(job) for job in steps],
    }


def step_view(job: offload.Job) -> dict[str, Any]:
    record = job.record
    return {
        "job_id": job.id,
        "task": record.task,
        "status": job.status,
        "progress": job.progress,
        "message": record.progress_message,
        "result": record.result,
        "error": job.error,
    }
