"""Celery: a FastAPI endpoint that publishes the job with ``slow.delay(id)``.

As in most FastAPI + Celery code, ``delay`` is called straight from the ``async def`` endpoint
(it blocks the event loop for one Redis round trip). The worker is
``celery -A webapps.celery_app:celery worker -P prefork -c 10``; no result backend.
"""

from __future__ import annotations

import os

from celery import Celery
from fastapi import FastAPI
from pydantic import BaseModel

from webapps._job import slow_job

celery = Celery("web", broker=os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6379/0"))
celery.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True)
slow = celery.task(name="slow")(slow_job)
app = FastAPI()


class Body(BaseModel):
    id: str


@app.post("/jobs", status_code=202)
async def submit(body: Body) -> dict[str, str]:
    result = slow.delay(body.id)
    return {"job_id": result.id}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
