"""A client process that keeps submitting ``tally`` jobs, through backend outages.

Run as ``python submitter.py ACKS LEDGER STOP MAX`` with ``$OFFLOAD_BACKEND`` set. Each job id
is appended to ACKS only after its submit returned (the job is acknowledged). A submit that
raises ``BackendError`` is logged and tried again, with the same job id, until it is
acknowledged; so a job that was stored although its reply was lost is never stored twice. It
stops when the file STOP exists or after MAX acknowledged jobs, whichever comes first.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import faultapp

import offload


def main(acks: Path, ledger: str, stop: Path, most: int) -> int:
    app = faultapp.build()
    spec = app.registry.get("tally")
    acked = failures = 0
    with app, acks.open("a") as out:
        for i in range(most):
            if stop.exists():
                break
            # Each job sleeps 50 ms, so that some are running whenever the backend goes away.
            new = app.prepare(spec, [ledger, i, 0.05, 0.05], {}, offload.SubmitOptions())
            while True:
                try:
                    app.run_sync(app.asubmit_many([new]))
                    break
                except offload.BackendError as exc:
                    failures += 1
                    print(f"submit failed ({failures}): {exc}", file=sys.stderr, flush=True)
                    time.sleep(0.05)
            out.write(new.id + "\n")
            out.flush()
            acked += 1
            time.sleep(0.005)  # a steady stream, not a flood: the workers share two cores
    print(f"submitter done: {acked} acknowledged, {failures} failed tries", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])))
