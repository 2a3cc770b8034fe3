"""The work itself, shared by both versions: a sales report, CPU-bound on purpose.

Aggregating ``rows`` generated sales by region, like the pandas or reportlab step of a real
report: about 0.1 s for 50,000 rows here.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

REGIONS = ("north", "south", "east", "west")


def render(client: str, rows: int) -> dict[str, Any]:
    rng = random.Random(f"{client}/{rows}")
    totals = dict.fromkeys(REGIONS, 0)
    for _ in range(rows):
        totals[rng.choice(REGIONS)] += rng.randint(1, 500)
    csv = "region,total\n" + "".join(f"{r},{t}\n" for r, t in totals.items())
    return {"totals": totals, "csv": csv, "sha256": hashlib.sha256(csv.encode()).hexdigest()}
