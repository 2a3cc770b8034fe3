"""Step 2 of an exam: render its questions (``questions.json``) as a LaTeX document.

python render.py DIR           # reads DIR/questions.json, writes DIR/exam.tex
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

TEMPLATE = r"""\documentclass[11pt]{article}
\title{%(title)s}
\author{Exam %(exam)s}
\date{}
\begin{document}
\maketitle
\section*{Questions}
\begin{enumerate}
%(items)s
\end{enumerate}
\section*{Answers}
\begin{enumerate}
%(answers)s
\end{enumerate}
\end{document}
"""


def escape(text: str) -> str:
    """Escape LaTeX specials in plain text (the course name comes from the request)."""
    for char in "\\{}&%#_^~$":
        text = text.replace(char, " " if char in "\\^~" else "\\" + char)
    return text


def render(data: dict[str, object]) -> str:
    questions = data["questions"]
    assert isinstance(questions, list)
    return TEMPLATE % {
        "title": escape(f"{data['course']}: practice exam".title()),
        "exam": escape(str(data["exam"])[:12]),
        "items": "\n".join(f"\\item {q['q']}" for q in questions),
        "answers": "\n".join(f"\\item {q['answer']}" for q in questions),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    ns = parser.parse_args()
    data = json.loads((ns.folder / "questions.json").read_text())
    temp = ns.folder / "exam.tex.tmp"
    temp.write_text(render(data))
    os.replace(temp, ns.folder / "exam.tex")


if __name__ == "__main__":
    main()
