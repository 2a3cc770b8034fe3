"""The three steps of an exam as external commands, shared by both versions (before.py, tasks.py).

1. ``scripts/make_data.py`` generates the questions and answers (JSON);
2. ``scripts/render.py`` renders them as LaTeX;
3. ``xelatex`` (or ``pdflatex``) compiles the PDF when installed; otherwise
   ``scripts/minipdf.py``, a pure-Python stand-in, writes it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Literal

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE / "scripts"
EXAMS = Path(os.environ.get("EXAMS_DIR", "data/exams")).resolve()
#: seconds make_data.py takes: a stand-in for sampling a question bank or calling a model
DATA_SECONDS = os.environ.get("EXAMS_DATA_SECONDS", "1.0")
TIMEOUTS = {"data": 30.0, "render": 30.0, "compile": 60.0}  # seconds, then the group is killed
NO_LATEX = "minipdf.py (pure Python: no LaTeX installed)"

Step = Literal["data", "render", "compile"]
STEPS: tuple[Step, ...] = ("data", "render", "compile")


def latex() -> str | None:
    """xelatex or pdflatex when installed; None: the pure-Python stand-in is used."""
    return shutil.which("xelatex") or shutil.which("pdflatex")


def compiler_name() -> str:
    tex = latex()
    return Path(tex).name if tex else NO_LATEX


def command(step: Step, folder: Path, exam_id: str, course: str, questions: int) -> list[str]:
    """The argv of one step, to run in the exam's ``folder``."""
    if step == "data":
        return [
            sys.executable,
            str(SCRIPTS / "make_data.py"),
            "--exam",
            exam_id,
            "--course",
            course,
            "--questions",
            str(questions),
            "--out",
            str(folder),
            "--seconds",
            DATA_SECONDS,
        ]
    if step == "render":
        return [sys.executable, str(SCRIPTS / "render.py"), str(folder)]
    tex = latex()
    if tex is None:
        return [sys.executable, str(SCRIPTS / "minipdf.py"), str(folder)]
    return [tex, "-interaction=nonstopmode", "-halt-on-error", "exam.tex"]
