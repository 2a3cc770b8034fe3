"""A process that does nothing but claim and complete jobs, as fast as it can.

Run as ``python claimer.py NAME OUT GO`` with ``$OFFLOAD_BACKEND`` set. It waits for the file GO
(so that two claimers start together; it creates OUT with the suffix ``.ready`` once it can
claim), then claims batches of a random size (1 to 32) from queue
``default`` and completes each job at once, until two claims in a row come back empty. Every
claimed job id is appended to OUT, one per line, before it is completed.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
import uuid
from pathlib import Path

import faultapp

from offload.core.job import Lease


async def claim_all(name: str, out: Path, go: Path) -> int:
    app = faultapp.build()
    backend = await app.backend()
    worker_id = f"{name}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    rng = random.Random()
    out.with_suffix(".ready").touch()
    while not go.exists():  # noqa: ASYNC240 - one stat every 5 ms
        await asyncio.sleep(0.005)
    empty = claimed = 0
    with out.open("a") as log:
        while empty < 2:
            batch = rng.randint(1, 32)
            jobs = await backend.claim(worker_id, {"default": batch}, batch, 30.0)
            empty = 0 if jobs else empty + 1
            log.writelines(job.id + "\n" for job in jobs)
            log.flush()
            claimed += len(jobs)
            await asyncio.gather(
                *(backend.complete(Lease(job.id, job.token), {"by": name}) for job in jobs)
            )
    await app.aclose()
    return claimed


def main() -> int:
    name, out, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    started = time.monotonic()
    claimed = asyncio.run(claim_all(name, out, go))
    print(f"{name}: claimed {claimed} in {time.monotonic() - started:.2f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
