"""A client process that keeps submitting ``tally`` jobs, through backend outages.

Run as ``python submitter.py ACKS LEDGER STOP MAX [options]`` with ``$OFFLOAD_BACKEND`` set. Each
job id is appended to ACKS only after its submit returned (the job is acknowledged). A submit that
raises ``BackendError`` is logged and tried again, with the same job id, until it is
acknowledged; so a job that was stored although its reply was lost is never stored twice. It
stops when the file STOP exists or after MAX acknowledged jobs, whichever comes first.

Options: ``--tenant`` and ``--queue`` of the jobs, ``--sleep`` (how long each job runs, 0.05 s),
``--pause`` between submits (0.005 s: a steady stream; 0 floods).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faultapp

import offload


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("acks", type=Path)
    p.add_argument("ledger")
    p.add_argument("stop", type=Path)
    p.add_argument("most", type=int)
    p.add_argument("--tenant")
    p.add_argument("--queue")
    p.add_argument("--sleep", type=float, default=0.05)
    p.add_argument("--pause", type=float, default=0.005)
    ns = p.parse_args(argv)
    app = faultapp.build()
    spec = app.registry.get("tally")
    options = offload.SubmitOptions(tenant=ns.tenant, queue=ns.queue)
    acked = failures = 0
    with app, ns.acks.open("a") as out:
        for i in range(ns.most):
            if ns.stop.exists():
                break
            new = app.prepare(spec, [ns.ledger, i, ns.sleep, ns.sleep], {}, options)
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
            if ns.pause:
                time.sleep(ns.pause)  # a steady stream, not a flood: the workers share two cores
    print(f"submitter done: {acked} acknowledged, {failures} failed tries", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
