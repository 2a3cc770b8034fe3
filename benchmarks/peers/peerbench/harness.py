"""One harness run: start Redis, measure every configuration ``runs`` times, save, report."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from systems import BY_NAME, CONFIGS, Config
from systems._shared import WORKLOADS

from peerbench import report, venvs
from peerbench.measure import Bench, Plan, Results, progress
from peerbench.redis_server import SETTINGS, RedisServer


def pick_configs(spec: str) -> tuple[Config, ...]:
    if spec == "all":
        return CONFIGS
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; known: {', '.join(BY_NAME)}")
    return tuple(BY_NAME[n] for n in names)


def pick_workloads(spec: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in spec.split(",") if s.strip())
    if not names or any(n not in WORKLOADS for n in names):
        raise SystemExit(f"workloads are a comma-separated subset of {','.join(WORKLOADS)}")
    return names


FLOWS = ("drain", "bulk", "pickup", "web", "scale")


def pick_flows(spec: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in spec.split(",") if s.strip())
    if not names or any(n not in FLOWS for n in names):
        raise SystemExit(f"flows are a comma-separated subset of {','.join(FLOWS)}")
    return names


def machine() -> dict[str, Any]:
    model, memory = "unknown", "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 2**20:.0f} GiB"
    except OSError:
        pass
    return {
        "cpu": f"{os.cpu_count()} cores (nproc), {model}",
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "tmp": tempfile.gettempdir(),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def command_line(argv: list[str]) -> str:
    return shlex.join(["python", "benchmarks/peers/run.py", *argv])


def measure(ns: argparse.Namespace, argv: list[str], out: Path) -> dict[str, Any]:
    """Measure every configuration ``runs`` times; ``out`` is rewritten after each one, so an
    interrupted run still leaves what it measured (``meta.complete`` is false then)."""
    plan = Plan(
        jobs=ns.jobs,
        runs=ns.runs,
        pickup_samples=ns.pickup_samples,
        concurrency=ns.concurrency,
        workloads=pick_workloads(ns.workloads),
        configs=pick_configs(ns.configs),
        flows=pick_flows(ns.flows),
        processes=tuple(int(p) for p in ns.processes.split(",") if p.strip()),
        scale_jobs=ns.scale_jobs,
    )
    folder = Path(tempfile.mkdtemp(prefix="offload-peers-"))
    progress(f"logs and databases in {folder}")
    results = Results()
    meta: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(argv),
        "quick": bool(ns.quick),
        "complete": False,
        "machine": machine(),
        "load_start": load_average(),
        "plan": {
            "jobs": plan.jobs,
            "runs": plan.runs,
            "pickup_samples": plan.pickup_samples,
            "concurrency": plan.concurrency,
            "workloads": list(plan.workloads),
            "configs": [c.name for c in plan.configs],
            "flows": list(plan.flows),
            "processes": list(plan.processes),
            "scale_jobs": plan.scale_jobs,
        },
        "redis_settings": dict(SETTINGS),
    }
    started = time.monotonic()

    def save() -> dict[str, Any]:
        seconds = round(time.monotonic() - started)
        meta["duration"] = f"{seconds // 60}m{seconds % 60:02d}s"
        meta["load_end"] = load_average()
        data = {
            "meta": meta,
            "values": results.values,
            "errors": results.errors,
            "about": results.about,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=1) + "\n")
        return data

    with RedisServer(folder) as server:
        meta["redis_version"] = server.info()["redis_version"]
        bench = Bench(server, folder, plan)
        for run in range(1, plan.runs + 1):
            order = plan.configs if run % 2 else tuple(reversed(plan.configs))
            for config in order:  # the order alternates so that slow drift hits all alike
                progress(f"run {run}/{plan.runs}: {config.name}")
                bench.run(config, results)
                meta["runs_done"] = {**meta.get("runs_done", {}), config.name: run}
                save()
    meta["complete"] = True
    data = save()
    if not results.errors:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        progress(f"there were errors: the logs are kept in {folder}")
    return data


def main(ns: argparse.Namespace, argv: list[str]) -> int:
    if ns.list:
        for c in CONFIGS:
            print(f"{c.name:16} {c.label} ({c.venv} environment)")
        return 0
    if ns.report_only is not None:
        data = json.loads(ns.report_only.read_text())
    else:
        out = ns.out or venvs.HERE / "results" / ("quick.json" if ns.quick else "full.json")
        data = measure(ns, argv, out)
        progress(f"wrote {out} in {data['meta']['duration']}")
    print(report.text_summary(data))
    if ns.write_docs or ns.report_only is not None:
        for path in report.write_docs(data):
            progress(f"wrote {path}")
    return 1 if data["errors"] else 0
