"""Tables, charts and the docs/peers.md section of a harness run.

docs/peers.md is written in two generated sections between HTML comment markers: ``queue``
(from run.py) and ``http`` (from http_peers.py). Each script replaces only its own section, so
they can be re-run independently; text outside the markers is kept.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peerbench import venvs

DOCS = venvs.REPO / "docs"
DOC = DOCS / "peers.md"
IMG = DOCS / "img"
OFFLOAD = ("offload-redis", "offload-sqlite")
LABELS = {
    "offload-redis": "offload (Redis)",
    "offload-sqlite": "offload (SQLite)",
    "celery-prefork": "Celery (prefork)",
    "celery-threads": "Celery (threads)",
    "rq": "RQ",
    "dramatiq": "Dramatiq",
    "arq": "arq",
    "huey": "Huey",
    "saq": "SAQ",
    "taskiq": "Taskiq",
}
EMPTY = '""'
WORKLOAD_TITLES = {
    "noop": "No-op",
    "sleep": "10 ms sleep (I/O-like)",
    "burn": "20 ms CPU burn",
    "incr": "One Redis call (INCR of a counter)",
}


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str
    higher_is_better: bool


def workload_figures(w: str) -> list[Figure]:
    return [
        Figure(f"submit_{w}", "Submit, one at a time", "jobs/s", True),
        Figure(f"e2e_{w}", "End-to-end throughput", "jobs/s", True),
        Figure(f"cpu_{w}", "Worker CPU per job", "ms", False),
        Figure(f"redis_cpu_{w}", "Redis CPU per job", "ms", False),
        Figure(f"rss_{w}", "Peak worker RSS", "MiB", False),
        Figure(f"pss_{w}", "Peak worker PSS", "MiB", False),
    ]


PICKUP = [
    Figure("pickup_p50", "Pickup p50 (enqueue called -> task started)", "ms", False),
    Figure("pickup_p90", "Pickup p90 (enqueue called -> task started)", "ms", False),
    Figure("pickup_ret_p50", "Pickup p50 (enqueue returned -> task started)", "ms", False),
    Figure("idle_cpu", "Idle worker CPU", "% of a core", False),
]
STORAGE = [
    Figure("bulk", "Submit, bulk (where the system has one)", "jobs/s", True),
    Figure("redis_bytes", "Redis memory per queued no-op job", "bytes", False),
]
#: The figures of the headline table (offload against the best peer).
HEADLINE = [
    Figure("submit_noop", "Submit, one at a time (no-op)", "jobs/s", True),
    Figure("bulk", "Submit, bulk", "jobs/s", True),
    Figure("e2e_noop", "End-to-end, no-op", "jobs/s", True),
    Figure("e2e_sleep", "End-to-end, 10 ms sleep", "jobs/s", True),
    Figure("e2e_burn", "End-to-end, 20 ms CPU burn", "jobs/s", True),
    Figure("cpu_noop", "Worker CPU per no-op job", "ms", False),
    Figure("cpu_sleep", "Worker CPU per sleep job", "ms", False),
    Figure("redis_cpu_noop", "Redis CPU per no-op job", "ms", False),
    Figure("pickup_p50", "Pickup p50, idle worker", "ms", False),
    Figure("pickup_p90", "Pickup p90, idle worker", "ms", False),
    Figure("pss_noop", "Peak worker PSS (no-op)", "MiB", False),
    Figure("redis_bytes", "Redis memory per queued job", "bytes", False),
]


# -- numbers ---------------------------------------------------------------------------------------
def fmt(value: float, unit: str) -> str:
    if unit in ("jobs/s", "bytes"):
        return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"
    if unit == "ms":
        return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"
    if unit == "MiB":
        return f"{value:.0f}"
    return f"{value:.1f}"


def cell(values: list[float] | None, unit: str) -> str:
    if not values:
        return "n/a"
    mid = fmt(statistics.median(values), unit)
    if len(values) == 1:
        return mid
    return f"{mid} ({fmt(min(values), unit)}-{fmt(max(values), unit)})"


def median(data: dict[str, Any], config: str, key: str) -> float | None:
    values = data["values"].get(config, {}).get(key)
    return statistics.median(values) if values else None


def configs_of(data: dict[str, Any]) -> list[str]:
    order = list(LABELS)
    names = list(data["meta"]["plan"]["configs"])
    return sorted(names, key=lambda n: order.index(n) if n in order else len(order))


def best_peer(data: dict[str, Any], fig: Figure) -> tuple[str, float] | None:
    found = [
        (name, value)
        for name in configs_of(data)
        if name not in OFFLOAD and (value := median(data, name, fig.key)) is not None
    ]
    if not found:
        return None
    pick = max if fig.higher_is_better else min
    return pick(found, key=lambda pair: pair[1])


def versus(ours: float | None, theirs: float, fig: Figure) -> str:
    """offload's median against the best peer's, as a factor in offload's favour (>1: ahead)."""
    if ours is None or ours <= 0 or theirs <= 0:
        return "n/a"
    factor = ours / theirs if fig.higher_is_better else theirs / ours
    word = "ahead" if factor >= 1 else "behind"
    return f"{factor:.2f}x ({word})"


# -- tables ----------------------------------------------------------------------------------------
def table(data: dict[str, Any], figures: list[Figure]) -> list[str]:
    head = ["System", *(f"{f.label} [{f.unit}]" for f in figures)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in configs_of(data):
        values = data["values"].get(name, {})
        cells = [cell(values.get(f.key), f.unit) for f in figures]
        label = f"**{LABELS.get(name, name)}**" if name in OFFLOAD else LABELS.get(name, name)
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return lines


def headline(data: dict[str, Any]) -> list[str]:
    head = [
        "Figure",
        "offload (Redis)",
        "offload (SQLite)",
        "fastest peer",
        "Redis vs peer",
        "SQLite vs peer",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for fig in HEADLINE:
        best = best_peer(data, fig)
        if best is None:
            continue
        redis, sqlite = (median(data, c, fig.key) for c in OFFLOAD)
        row = [
            f"{fig.label} [{fig.unit}]",
            "n/a" if redis is None else fmt(redis, fig.unit),
            "n/a" if sqlite is None else fmt(sqlite, fig.unit),
            f"{LABELS.get(best[0], best[0])}: {fmt(best[1], fig.unit)}",
            versus(redis, best[1], fig),
            versus(sqlite, best[1], fig),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def text_summary(data: dict[str, Any]) -> str:
    """The headline table, for the terminal."""
    from peerbench import report_flows

    flows = data["meta"]["plan"].get("flows", DEFAULT_FLOWS)
    out = [f"{data['meta']['date']}, {data['meta']['duration']}"]
    if "drain" in flows:
        out += headline(data)
    if "web" in flows:
        out += [report_flows.web_section(data)]
    if "scale" in flows:
        out += [report_flows.scale_section(data)]
    for name, errors in data["errors"].items():
        out += [f"{name}: {e.splitlines()[0]}" for e in errors]
    return "\n".join(out)


# -- the document ----------------------------------------------------------------------------------
def machine_lines(meta: dict[str, Any]) -> list[str]:
    m = meta["machine"]
    redis = ", ".join(f"`{k} {v or EMPTY}`" for k, v in meta["redis_settings"].items())
    return [
        f"- CPU: {m['cpu']}; memory {m['memory']}; {m['os']}; Python {m['python']}",
        f"- Redis {meta['redis_version']}, private server on a free loopback port, started and "
        f"stopped by the harness: {redis}",
        f"- Load average (1, 5, 15 min) at the start: {', '.join(map(str, meta['load_start']))}; "
        f"at the end: {', '.join(map(str, meta['load_end']))}. The machine was shared with "
        "other engineers' test runs: mind the min-max ranges.",
    ]


def section(data: dict[str, Any], charts: list[Path]) -> str:
    meta, plan = data["meta"], data["meta"]["plan"]
    if meta["quick"]:
        kind = "**`--quick` run** (indicative only)"
    elif not meta.get("complete", True):
        done = ", ".join(f"{k} {v}" for k, v in meta.get("runs_done", {}).items())
        kind = f"**partial run** (stopped early; runs completed: {done})"
    else:
        kind = "full run"
    out = [
        f"Measured on {meta['date']} in {meta['duration']}, a {kind}: {plan['jobs']:,} jobs per "
        f"measurement, {plan['runs']} run(s) of every configuration"
        f"{' planned' if not meta.get('complete', True) else ''}, "
        f"{plan['pickup_samples']} pickup samples per run, worker concurrency "
        f"{plan['concurrency']}. Cells are medians with min-max over the runs in brackets.",
        "",
        "```",
        meta["command"],
        "```",
        "",
        *machine_lines(meta),
        "",
        "### Headline: offload against the fastest peer",
        "",
        "Factor > 1: offload is ahead by that factor; < 1: behind (for figures where lower "
        "is better, the factor is peer / offload).",
        "",
        *headline(data),
        "",
    ]
    for w in plan["workloads"]:
        out += [f"### {WORKLOAD_TITLES[w]}", "", *table(data, workload_figures(w)), ""]
    out += ["### Pickup latency and idle CPU", "", *table(data, PICKUP), ""]
    out += ["### Bulk submit and Redis memory", "", *table(data, STORAGE), ""]
    if charts:
        out += ["### Charts", ""]
        out += [f"![{p.stem}](img/{p.name})" for p in charts]
        out += [""]
    out += ["### Versions and knobs, per configuration", ""]
    for name in configs_of(data):
        about = data["about"].get(name)
        if about is None:
            continue
        versions = ", ".join(f"{k} {v}" for k, v in about["versions"].items())
        out += [f"**{LABELS.get(name, name)}** ({versions})", ""]
        out += [f"- {k}" for k in about["knobs"]]
        out += [""]
    if data["errors"]:
        out += ["### Errors", ""]
        for name, errors in data["errors"].items():
            out += [f"- {name}: `{e.splitlines()[0][:300]}`" for e in errors]
        out += [""]
    return "\n".join(out)


SKELETON = """# offload and its peers

<!-- peers:queue -->
<!-- /peers:queue -->

<!-- peers:http -->
<!-- /peers:http -->
"""


def write_section(name: str, text: str, path: Path = DOC) -> Path:
    """Replace the text between ``<!-- peers:NAME -->`` and its closing marker."""
    doc = path.read_text() if path.exists() else SKELETON
    start, end = f"<!-- peers:{name} -->", f"<!-- /peers:{name} -->"
    if start not in doc or end not in doc:
        doc = doc.rstrip("\n") + f"\n\n{start}\n{end}\n"
    head, _, rest = doc.partition(start)
    _, _, tail = rest.partition(end)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{head}{start}\n{text.rstrip()}\n{end}{tail}")
    return path


DEFAULT_FLOWS = ["drain", "bulk", "pickup"]  # results files from before --flows


def write_docs(data: dict[str, Any]) -> list[Path]:
    """The sections of the flows measured: ``queue`` (drain), ``web``, ``scale``."""
    from peerbench import report_flows

    flows = data["meta"]["plan"].get("flows", DEFAULT_FLOWS)
    written: list[Path] = []
    if "drain" in flows:
        from peerbench import charts

        IMG.mkdir(parents=True, exist_ok=True)
        pngs = charts.draw_all(data, IMG)
        written += [write_section("queue", section(data, pngs)), *pngs]
    if "web" in flows:
        written.append(write_section("web", report_flows.web_section(data)))
    if "scale" in flows:
        written.append(write_section("scale", report_flows.scale_section(data)))
    return written
