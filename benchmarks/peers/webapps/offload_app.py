"""offload: a FastAPI endpoint that submits the job with ``await slow.asubmit(id)``.

The job is durably stored (SQLite COMMIT or Redis write) before the 202 goes out; an
``offload worker webapps.offload_app:jobs --concurrency 10`` runs it in its thread executor.
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel

import offload
from webapps._job import slow_job

jobs = offload.App()  # $OFFLOAD_BACKEND
slow = jobs.task(name="slow")(slow_job)
app = FastAPI()


class Body(BaseModel):
    id: str


@app.post("/jobs", status_code=202)
async def submit(body: Body) -> dict[str, str]:
    job = await slow.asubmit(body.id)
    return {"job_id": job.id}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
