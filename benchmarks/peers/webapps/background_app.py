"""FastAPI ``BackgroundTasks``: the job runs in the server process after the response.

The plain-function job goes to Starlette's thread pool (anyio's default of 40 threads); nothing
is stored anywhere, so whatever has not run when the process stops is gone.
"""

from __future__ import annotations

import uuid

from fastapi import BackgroundTasks, FastAPI
from pydantic import BaseModel

from webapps._job import slow_job

app = FastAPI()


class Body(BaseModel):
    id: str


@app.post("/jobs", status_code=202)
async def submit(body: Body, background: BackgroundTasks) -> dict[str, str]:
    background.add_task(slow_job, body.id)
    return {"job_id": uuid.uuid4().hex}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
