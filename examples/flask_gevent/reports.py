"""The work itself, shared by both versions (before.py and tasks.py): build a sales report.

CPU-bound on purpose (aggregating ``rows`` generated sales, then hashing the CSV), like the
pandas or reportlab step of a real report: about 0.15 s for the default 60,000 rows here.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

REPORTS = Path(os.environ.get("REPORTS_DIR", "data/reports"))
REGIONS = ("north", "south", "east", "west")


class Report(TypedDict):
    client: str
    rows: int
    totals: dict[str, int]
    path: str
    sha256: str


def build(report_id: str, client: str, rows: int) -> Report:
    """Aggregate the client's sales by region and write them as CSV to REPORTS/<id>.csv."""
    rng = random.Random(f"{client}/{rows}")
    totals = dict.fromkeys(REGIONS, 0)
    for _ in range(rows):
        totals[rng.choice(REGIONS)] += rng.randint(1, 500)
    body = "region,total\n" + "".join(f"{r},{t}\n" for r, t in totals.items())
    REPORTS.mkdir(parents=True, exist_ok=True)
    path = REPORTS / f"{report_id}.csv"
    path.write_text(body)
    return Report(
        client=client,
        rows=rows,
        totals=totals,
        path=str(path),
        sha256=hashlib.sha256(body.encode()).hexdigest(),
    )
