"""Compare offload with Celery, RQ, Dramatiq, arq, Huey, SAQ and Taskiq on the same workloads.

Run from anywhere with Python 3.11+ (docs/peers.md explains every figure and knob)::

    python benchmarks/peers/run.py --quick          # 500 jobs, 1 run: a few minutes
    python benchmarks/peers/run.py                  # 5,000 jobs, 3 runs: the published tables
    python benchmarks/peers/run.py --configs offload-redis,celery-prefork --workloads noop

It makes the peers' virtual environments when they are missing (pinned versions from
requirements*.txt), re-starts itself in ``.venv-peers``, starts a private redis-server on a
free loopback port, measures, stops it, writes the raw results to ``results/`` and, with
``--write-docs``, docs/peers.md and docs/img/peers-*.png.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peerbench import venvs


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--jobs", type=int, default=5_000, help="jobs per measurement (5000)")
    p.add_argument("--runs", type=int, default=3, help="runs of every configuration (3)")
    p.add_argument("--pickup-samples", type=int, default=100, help="pickup samples per run (100)")
    p.add_argument("--concurrency", type=int, default=10, help="job slots per worker (10)")
    p.add_argument(
        "--quick", action="store_true", help="500 jobs, 1 run, 50 pickup samples: to try it out"
    )
    p.add_argument(
        "--configs", default="all", help="comma-separated configurations (default all; see --list)"
    )
    p.add_argument(
        "--workloads",
        default="noop,sleep,burn",
        help="noop,sleep,burn (default) and incr (one Redis INCR per job)",
    )
    p.add_argument(
        "--flows",
        default="drain,bulk,pickup",
        help="drain,bulk,pickup (default), web (one producer while the worker runs), "
        "scale (many worker processes, no-op)",
    )
    p.add_argument("--processes", default="1,2,4", help="the scale flow's worker processes (1,2,4)")
    p.add_argument(
        "--scale-jobs", type=int, default=20_000, help="the scale flow's pre-filled jobs (20000)"
    )
    p.add_argument("--list", action="store_true", help="list the configurations and exit")
    p.add_argument("--out", type=Path, help="raw results JSON (default results/<mode>.json)")
    p.add_argument(
        "--write-docs", action="store_true", help="write docs/peers.md and docs/img/peers-*.png"
    )
    p.add_argument(
        "--report-only",
        type=Path,
        metavar="JSON",
        help="measure nothing: write the docs from a results file",
    )
    ns = p.parse_args(argv)
    if ns.quick:
        ns.jobs, ns.runs, ns.pickup_samples = 500, 1, 50
    return ns


def main(argv: list[str]) -> int:
    ns = parse_args(argv)
    if ns.report_only is None:
        for venv in ("peers", "arq", "offload"):
            venvs.ensure(venv, venvs.base_python())
    else:
        venvs.ensure("peers", venvs.base_python())
    if Path(sys.prefix).resolve() != venvs.VENVS["peers"].resolve():
        python = str(venvs.python("peers"))
        os.execv(python, [python, str(Path(__file__).resolve()), *argv])
    from peerbench import harness  # needs the peers environment (redis-py, matplotlib)

    return harness.main(ns, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
