"""The exam generator with offload: ``POST /exams`` stores a three-step workflow and answers.

    uvicorn app:api     # from this folder, beside `offload worker tasks:app` (run.py runs both)

The exam is built by the workers, at most 4 commands at a time (see tasks.py). Send an
``Idempotency-Key`` header to make a retried request safe: the same key is the same exam.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field

import offload
import store
from offload.integrations.fastapi import lifespan, mount
from steps import EXAMS
from tasks import app as jobs
from tasks import exam_workflow

JOBS = "/jobs"  # offload's own routes (job, history, live events) are mounted here
DB = Path(os.environ.get("EXAMS_DB", "data/exams.db"))


class NewExam(BaseModel):
    course: str = Field(min_length=1, max_length=100)
    questions: int = Field(default=10, ge=1, le=100)


@asynccontextmanager
async def startup(api: FastAPI) -> AsyncIterator[None]:
    await asyncio.to_thread(store.create_schema, DB)
    async with lifespan(jobs)(api):  # opens the job backend, closes it at the end
        yield


api = FastAPI(title="exam generator (offload)", lifespan=startup)
mount(api, jobs, prefix=JOBS)


@api.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@api.post("/exams", status_code=202)
async def create_exam(
    body: NewExam, idempotency_key: Annotated[str | None, Header(max_length=200)] = None
) -> JSONResponse:
    """Store the exam's workflow (committed before the 202) and answer with the exam's id.

    With an ``Idempotency-Key``, a request repeated after a lost answer (say the server died
    before it could reply) gets the exam of the first request instead of a second exam.
    """
    if idempotency_key is None:
        exam_id = uuid.uuid4().hex
        workflow_id = None
    else:
        exam_id = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
        workflow_id = await asyncio.to_thread(store.workflow_of, DB, exam_id)
    if workflow_id is None:
        workflow = await jobs.asubmit_workflow(exam_workflow(exam_id, body.course, body.questions))
        workflow_id = await asyncio.to_thread(store.record, DB, exam_id, workflow.id)
        if workflow_id != workflow.id:  # the same key at the same moment: keep the first
            await workflow.acancel()
    return JSONResponse(
        {
            "exam_id": exam_id,
            "workflow_id": workflow_id,
            "status_url": f"/exams/{exam_id}",
            "events_url": f"{JOBS}/{workflow_id}/events",
        },
        status_code=202,
        headers={"Location": f"/exams/{exam_id}"},
    )


@api.get("/exams/{exam_id}")
async def get_exam(exam_id: str) -> dict[str, Any]:
    return await exam_view(exam_id)


@api.delete("/exams/{exam_id}")
async def cancel_exam(exam_id: str) -> dict[str, Any]:
    """Cancel the exam: waiting steps never start; a running command is killed with its group."""
    workflow = await jobs.aworkflow((await exam_view(exam_id))["workflow_id"])
    with contextlib.suppress(offload.InvalidTransition):  # it ended first: nothing to cancel
        await workflow.acancel()
    return await exam_view(exam_id)


@api.get("/exams/{exam_id}/pdf")
async def get_pdf(exam_id: str) -> FileResponse:
    view = await exam_view(exam_id)
    if view["status"] != "succeeded":
        raise HTTPException(409, f"exam {exam_id} is {view['status']}")
    return FileResponse(EXAMS / exam_id / "exam.pdf", media_type="application/pdf")


async def exam_view(exam_id: str) -> dict[str, Any]:
    """The exam's workflow status and steps. :raises HTTPException: 404 for an unknown exam."""
    workflow_id = await asyncio.to_thread(store.workflow_of, DB, exam_id)
    if workflow_id is None:
        raise HTTPException(404, f"no exam {exam_id}")
    workflow = await jobs.aworkflow(workflow_id)
    status, steps = await workflow.asnapshot()  # one read: the status and steps agree
    return {
        "exam_id": exam_id,
        "workflow_id": workflow_id,
        "status": status,
        "steps": [None if job is None else step_view(job) for job in steps],
        "pdf": f"/exams/{exam_id}/pdf",
    }


def step_view(job: offload.Job) -> dict[str, Any]:
    return {"job_id": job.id, "status": job.status, "result": job.record.result}
