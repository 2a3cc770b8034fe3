"""The exam generator's jobs: three external commands per exam, at most 4 running anywhere.

The workers run them: ``offload worker tasks:app`` from this folder (``run.py`` starts two).

An exam is a chain of three steps (see steps.py). All three are the one task ``exam_step``,
whose ``concurrency=4`` is a global cap held by the backend: whatever the number of requests,
workers and slots, at most 4 commands run at once (a cap on each of three tasks would allow
12). Later steps have a higher priority, so exams already started finish first.
"""

from __future__ import annotations

from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

import offload
from steps import EXAMS, TIMEOUTS, Step, command, compiler_name

SLOTS = 4

app = offload.App()  # $OFFLOAD_BACKEND (run.py sets it), else sqlite:///offload.db


class Exam(TypedDict):
    exam_id: str
    course: str
    questions: int
    done: list[str]  # the steps finished so far
    compiler: str | None


@app.task(concurrency=SLOTS, retries=2)
async def exam_step(exam: Exam, step: Step) -> Exam:
    """Run one step's command in the exam's folder, in its own process group, with a timeout
    (on timeout or cancel, the command and everything it started are killed)."""
    folder = EXAMS / exam["exam_id"]
    folder.mkdir(parents=True, exist_ok=True)
    argv = command(step, folder, exam["exam_id"], exam["course"], exam["questions"])
    await offload.run_process(argv, cwd=folder, timeout=TIMEOUTS[step])
    return Exam(
        exam_id=exam["exam_id"],
        course=exam["course"],
        questions=exam["questions"],
        done=[*exam["done"], step],
        compiler=compiler_name() if step == "compile" else exam["compiler"],
    )


def exam_workflow(exam_id: str, course: str, questions: int) -> offload.Chain:
    """data -> render -> compile; each step receives the exam as the previous step left it."""
    exam = Exam(exam_id=exam_id, course=course, questions=questions, done=[], compiler=None)
    return offload.chain(
        exam_step.s(exam, step="data"),
        exam_step.options(priority=1).s(step="render"),
        exam_step.options(priority=2).s(step="compile"),
    )
