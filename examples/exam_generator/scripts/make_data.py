"""Step 1 of an exam: generate its questions and answers as JSON (deterministic per exam id).

    python make_data.py --exam ID --course NAME --questions N --out DIR [--seconds S]

``--seconds`` stands in for the slow part of a real generator (sampling a question bank,
calling a model): the script waits that long before it writes ``DIR/questions.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path


def questions(exam_id: str, course: str, count: int) -> list[dict[str, str]]:
    rng = random.Random(f"{course}/{exam_id}")
    made = []
    for _ in range(count):
        a, b, x = rng.randint(2, 12), rng.randint(1, 40), rng.randint(-9, 9)
        kind = rng.choice(("sum", "product", "equation"))
        if kind == "sum":
            made.append({"q": f"Compute ${a * 7} + {b}$.", "answer": str(a * 7 + b)})
        elif kind == "product":
            made.append({"q": f"Compute ${a} \\times {b}$.", "answer": str(a * b)})
        else:
            made.append({"q": f"Solve ${a}x + {b} = {a * x + b}$ for $x$.", "answer": str(x)})
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exam", required=True)
    parser.add_argument("--course", required=True)
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=0.0)
    ns = parser.parse_args()
    time.sleep(ns.seconds)
    ns.out.mkdir(parents=True, exist_ok=True)
    body = {
        "exam": ns.exam,
        "course": ns.course,
        "questions": questions(ns.exam, ns.course, ns.questions),
    }
    temp = ns.out / "questions.json.tmp"
    temp.write_text(json.dumps(body, indent=1))
    os.replace(temp, ns.out / "questions.json")  # a rerun after a crash never sees half a file


if __name__ == "__main__":
    main()
