"""PNG charts of a harness run (matplotlib, no display): docs/img/peers-*.png."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from peerbench.report import LABELS, OFFLOAD, WORKLOAD_TITLES, configs_of

OURS, THEIRS = "#d95f02", "#7570b3"


def bars(ax: Axes, data: dict[str, Any], key: str, title: str, unit: str, log: bool) -> None:
    """One horizontal bar per configuration: the median, with a min-max whisker."""
    names = [n for n in configs_of(data) if data["values"].get(n, {}).get(key)]
    if not names:
        ax.set_visible(False)
        return
    values = [data["values"][n][key] for n in names]
    mids = [statistics.median(v) for v in values]
    low = [m - min(v) for m, v in zip(mids, values, strict=True)]
    high = [max(v) - m for m, v in zip(mids, values, strict=True)]
    colors = [OURS if n in OFFLOAD else THEIRS for n in names]
    ys = range(len(names))
    ax.barh(ys, mids, xerr=[low, high], color=colors, capsize=2)
    ax.set_yticks(list(ys), [LABELS.get(n, n) for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(unit, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    if log:
        ax.set_xscale("log")
    for y, m in zip(ys, mids, strict=True):
        shown = f"{m:,.0f}" if m >= 100 else f"{m:.3g}"
        ax.annotate(
            shown, (m, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7
        )


def save(fig: Figure, folder: Path, name: str, note: str) -> Path:
    fig.text(0.01, 0.005, note, fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = folder / f"peers-{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_all(data: dict[str, Any], folder: Path) -> list[Path]:
    meta = data["meta"]
    plan = meta["plan"]
    note = (
        f"{meta['date']}, {plan['jobs']:,} jobs, {plan['runs']} run(s)"
        + (", --quick" if meta["quick"] else "")
        + f"; median, whiskers min-max; {meta['machine']['cpu'].split(',')[0]}"
    )
    workloads = plan["workloads"]
    out = []

    fig, axes = plt.subplots(1, len(workloads), figsize=(4.2 * len(workloads), 4.2), squeeze=False)
    for ax, w in zip(axes[0], workloads, strict=True):
        bars(ax, data, f"e2e_{w}", f"End-to-end, {WORKLOAD_TITLES[w]}", "jobs/s", log=False)
    out.append(save(fig, folder, "throughput", note))

    fig, axes = plt.subplots(1, len(workloads), figsize=(4.2 * len(workloads), 4.2), squeeze=False)
    for ax, w in zip(axes[0], workloads, strict=True):
        log = w != "burn"
        unit = "ms (log)" if log else "ms"
        bars(ax, data, f"cpu_{w}", f"Worker CPU per job, {WORKLOAD_TITLES[w]}", unit, log=log)
    out.append(save(fig, folder, "cpu", note))

    fig, axes = plt.subplots(1, 2, figsize=(8.4, 4.2), squeeze=False)
    bars(axes[0][0], data, "pickup_p50", "Pickup p50, idle worker", "ms (log)", log=True)
    bars(axes[0][1], data, "pickup_p90", "Pickup p90, idle worker", "ms (log)", log=True)
    out.append(save(fig, folder, "pickup", note))

    fig, axes = plt.subplots(1, 2, figsize=(8.4, 4.2), squeeze=False)
    bars(axes[0][0], data, "submit_noop", "Submit, one at a time", "jobs/s", log=False)
    bars(axes[0][1], data, "bulk", "Submit, bulk", "jobs/s", log=False)
    out.append(save(fig, folder, "submit", note))

    fig, axes = plt.subplots(1, 2, figsize=(8.4, 4.2), squeeze=False)
    bars(axes[0][0], data, "pss_noop", "Peak worker PSS, no-op", "MiB", log=False)
    bars(axes[0][1], data, "redis_bytes", "Redis memory per queued job", "bytes", log=False)
    out.append(save(fig, folder, "memory", note))
    return out
