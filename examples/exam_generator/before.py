"""BEFORE: the exam generator with a thread per request. Kept to measure against ``app.py``.

    uvicorn before:api       # from this folder (run.py --before starts it)

``POST /exams`` starts a thread that runs the three commands with ``subprocess.run`` and
answers at once. Nothing bounds them: 100 requests are 100 threads and up to 100 commands at
the same moment, so memory grows with the requests and every command shares the CPU with every
other (and with the web server). Statuses live in this process's memory: a restart loses them
and kills the exams in flight. No command has a timeout: a hung compiler holds its thread
forever.
"""

from __future__ import annotations

import subprocess
import threading
import uuid

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from steps import EXAMS, STEPS, command

api = FastAPI(title="exam generator (before)")
statuses: dict[str, str] = {}
lock = threading.Lock()


class NewExam(BaseModel):
    course: str = Field(min_length=1, max_length=100)
    questions: int = Field(default=10, ge=1, le=100)


def build(exam_id: str, course: str, questions: int) -> None:
    folder = EXAMS / exam_id
    folder.mkdir(parents=True, exist_ok=True)
    try:
        for step in STEPS:
            with lock:
                statuses[exam_id] = f"running {step}"
            subprocess.run(
                command(step, folder, exam_id, course, questions),
                cwd=folder,
                check=True,
                capture_output=True,
            )
    except subprocess.CalledProcessError as exc:
        with lock:
            statuses[exam_id] = f"failed: {exc}"
    else:
        with lock:
            statuses[exam_id] = "succeeded"


@api.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@api.post("/exams", status_code=202)
async def create_exam(body: NewExam) -> dict[str, str]:
    exam_id = uuid.uuid4().hex
    with lock:
        statuses[exam_id] = "started"
    threading.Thread(target=build, args=(exam_id, body.course, body.questions)).start()
    return {"exam_id": exam_id, "status_url": f"/exams/{exam_id}"}


@api.get("/exams/{exam_id}")
async def get_exam(exam_id: str) -> dict[str, str]:
    with lock:
        status = statuses.get(exam_id)
    if status is None:
        raise HTTPException(404, f"no exam {exam_id} (in this process)")
    return {"exam_id": exam_id, "status": status, "pdf": str(EXAMS / exam_id / "exam.pdf")}
