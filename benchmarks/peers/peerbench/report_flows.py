"""The tables of the ``web`` and ``scale`` flows (docs/peers.md, between ``<!-- peers:web -->``
and ``<!-- peers:scale -->`` markers)."""

from __future__ import annotations

import statistics
from typing import Any

from peerbench.report import LABELS, OFFLOAD, WORKLOAD_TITLES, Figure, cell, configs_of, fmt

TARGET = 2.0  # issue 22 item 7: offload's end-to-end rate in this flow >= 2x the fastest peer
SCALE_TARGET = 1.6  # issue 22 item 6: 2 processes on 2 cores >= 1.6x one
CORES = 16  # the machine the per-job costs predict


def web_figures(w: str) -> list[Figure]:
    return [
        Figure(f"web_e2e_{w}", "end-to-end, one producer while the worker runs", "jobs/s", True),
        Figure(
            f"web_submit_busy_{w}", "producer's enqueue rate while the worker ran", "jobs/s", True
        ),
        Figure(f"web_submit_alone_{w}", "one-at-a-time enqueue, no worker", "jobs/s", True),
        Figure(f"web_client_cpu_alone_{w}", "client CPU per enqueue, no worker", "ms", False),
        Figure(f"web_client_cpu_busy_{w}", "client CPU per enqueue, worker running", "ms", False),
        Figure(f"web_worker_cpu_{w}", "worker CPU per job", "ms", False),
        Figure(f"web_redis_cpu_{w}", "Redis CPU per job (enqueue + run)", "µs", False),
        Figure(f"web_redis_cpu_alone_{w}", "Redis CPU per enqueue, no worker", "µs", False),
    ]


PICKUP = [Figure("pickup_p50", "pickup p50 on an idle worker", "ms", False)]


def med(data: dict[str, Any], config: str, key: str) -> float | None:
    values = data["values"].get(config, {}).get(key)
    return statistics.median(values) if values else None


def unit_cell(values: list[float] | None, unit: str) -> str:
    if unit == "µs":
        if not values:
            return "n/a"
        mid = f"{statistics.median(values):.0f}"
        if len(values) == 1:
            return mid
        return f"{mid} ({min(values):.0f}-{max(values):.0f})"
    return cell(values, unit)


def transposed(data: dict[str, Any], figures: list[Figure]) -> list[str]:
    """One row per figure, one column per system (the issue's layout)."""
    names = configs_of(data)
    lines = [
        "| figure | " + " | ".join(LABELS.get(n, n) for n in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for fig in figures:
        cells = [unit_cell(data["values"].get(n, {}).get(fig.key), fig.unit) for n in names]
        if all(c == "n/a" for c in cells):
            continue
        lines.append(f"| {fig.label}, {fig.unit} | " + " | ".join(cells) + " |")
    return lines


def verdict(data: dict[str, Any], key: str) -> str:
    ours = med(data, "offload-redis", key)
    peers = [
        (n, v)
        for n in configs_of(data)
        if n not in OFFLOAD and (v := med(data, n, key)) is not None
    ]
    if ours is None or not peers:
        return "n/a (not measured)"
    name, best = max(peers, key=lambda p: p[1])
    factor = ours / best
    word = "**met**" if factor >= TARGET else "**missed**"
    return (
        f"offload (Redis) {fmt(ours, 'jobs/s')} jobs/s against {LABELS.get(name, name)} "
        f"{fmt(best, 'jobs/s')} jobs/s: {factor:.2f}x, target >= {TARGET:.0f}x {word}"
    )


def meta_lines(meta: dict[str, Any]) -> list[str]:
    load0, load1 = meta["load_start"], meta.get("load_end", meta["load_start"])
    return [
        "```",
        meta["command"],
        "```",
        "",
        f"Measured {meta['date']} in {meta.get('duration', '?')}"
        + ("" if meta.get("complete", True) else " (**partial run**)")
        + f"; {meta['machine']['cpu']}; Redis {meta.get('redis_version', '?')} (private, "
        f"AOF everysec); load average (1, 5, 15 min) {', '.join(map(str, load0))} at the start, "
        f"{', '.join(map(str, load1))} at the end (the 2 cores were shared with other "
        "helpers' runs). Cells: median (min-max) over the runs.",
    ]


def web_section(data: dict[str, Any]) -> str:
    meta, plan = data["meta"], data["meta"]["plan"]
    out = [
        f"{plan['jobs']:,} jobs per measurement, {plan['runs']} run(s), worker concurrency "
        f"{plan['concurrency']}.",
        "",
        *meta_lines(meta),
        "",
    ]
    for i, w in enumerate(plan["workloads"]):
        figures = web_figures(w) + (PICKUP if i == 0 else [])
        out += [f"#### {WORKLOAD_TITLES.get(w, w)}", "", *transposed(data, figures), ""]
        out += [f"Target (end-to-end): {verdict(data, f'web_e2e_{w}')}.", ""]
    return "\n".join(out)


SCALE_MODES = {
    ("offload-redis", "processes"): "offload `worker --processes N`",
    ("offload-redis", "separate"): "offload, N separate `offload worker`",
    ("dramatiq", "processes"): "Dramatiq `--processes N --threads 10`",
    ("huey", "processes"): "Huey `-k process -w N`",
    ("taskiq", "processes"): "Taskiq `--workers N`",
}


def scale_rows(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    found = []
    for name in configs_of(data):
        keys = data["values"].get(name, {})
        modes = sorted({k.split("_")[2] for k in keys if k.startswith("scale_rate_")})
        found += [(name, mode, SCALE_MODES.get((name, mode), f"{name} {mode}")) for mode in modes]
    return found


def scale_value(data: dict[str, Any], name: str, what: str, mode: str, p: int) -> list[float]:
    values = data["values"].get(name, {})
    got: list[float] = values.get(f"scale_{what}_{mode}_{p}", [])
    if not got and mode == "separate" and p == 1:  # one separate worker is `--processes 1`
        got = values.get(f"scale_{what}_processes_1", [])
    return got


def two_cores(worker_us: float, redis_us: float, processes: int) -> float:
    """The most jobs/s 2 cores allow when the workers and Redis share them: 2 s / (worker +
    Redis CPU per job), and at most one core for a single worker process (its GIL)."""
    both = 2e6 / (worker_us + redis_us)
    return min(both, 1e6 / worker_us) if processes == 1 else both


def scale_section(data: dict[str, Any]) -> str:
    meta, plan = data["meta"], data["meta"]["plan"]
    ps = plan["processes"]
    head = [
        "system, mode",
        *(f"N={p} jobs/s" for p in ps),
        "N=2 / N=1",
        "worker CPU per job at N=2, µs",
        "Redis CPU per job at N=2, µs",
        "2-core ceiling N=1 / N=2, jobs/s",
        f"predicted {CORES} cores, jobs/s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    verdicts = []
    for name, mode, label in scale_rows(data):
        rates = [scale_value(data, name, "rate", mode, p) for p in ps]
        one, two = (scale_value(data, name, "rate", mode, p) for p in (1, 2))
        ratio = statistics.median(two) / statistics.median(one) if one and two else None
        cpu, redis = (scale_value(data, name, k, mode, 2) for k in ("cpu", "redis"))
        predicted, ceiling = "n/a", "n/a"
        cpu1, redis1 = (scale_value(data, name, k, mode, 1) for k in ("cpu", "redis"))
        if cpu and redis and cpu1 and redis1:
            one = two_cores(statistics.median(cpu1), statistics.median(redis1), 1)
            both = two_cores(statistics.median(cpu), statistics.median(redis), 2)
            ceiling = f"{one:,.0f} / {both:,.0f}"
        if cpu and redis:
            w, r = statistics.median(cpu), statistics.median(redis)
            predicted = f"{min(1e6 / r, (CORES - 1) * 1e6 / w):,.0f}"
        lines.append(
            "| "
            + " | ".join(
                [
                    label,
                    *(cell(v, "jobs/s") for v in rates),
                    "n/a" if ratio is None else f"{ratio:.2f}x",
                    unit_cell(cpu, "µs"),
                    unit_cell(redis, "µs"),
                    ceiling,
                    predicted,
                ]
            )
            + " |"
        )
        if name in OFFLOAD and ratio is not None:
            word = "**met**" if ratio >= SCALE_TARGET else "**missed**"
            verdicts.append(f"{label}: {ratio:.2f}x, target >= {SCALE_TARGET}x {word}")
    out = [
        f"{plan['scale_jobs']:,} no-op jobs pre-filled one at a time, then the workers start and "
        f"drain them; {plan['runs']} run(s); figures between the 10 % and 90 % completion marks.",
        "",
        *meta_lines(meta),
        "",
        *lines,
        "",
        *(f"- Target (2 processes on 2 cores >= 1.6x one): {v}." for v in verdicts),
    ]
    return "\n".join(out)
