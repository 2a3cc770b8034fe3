"""Global limits of a task, held by the backend across all workers: concurrency caps (per
task and per concurrency key) and rate limits (starts per period, per task and per key)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(
    r"^\s*(?P<count>\d+)\s*/\s*(?P<every>\d*(?:\.\d+)?)\s*"
    r"(?P<unit>s|sec|second|m|min|minute|h|hour|d|day)s?\s*$"
)


@dataclass(frozen=True, slots=True)
class Limits:
    """What a job of a limited task may only do together with the task's other jobs.

    Rates are stored as the interval between starts (seconds); starts are spread evenly (no
    bursts): "60/m" starts one job a second.
    """

    concurrency: int | None = None  # running jobs of the task, all workers together
    key_concurrency: int | None = None  # running jobs of the task per concurrency_key
    rate: float | None = None  # seconds between starts of the task
    key_rate: float | None = None  # seconds between starts per concurrency_key

    @property
    def capped(self) -> bool:
        """Whether a job may have to wait for a slot (it then stays queued)."""
        return self.concurrency is not None or self.key_concurrency is not None

    @property
    def any(self) -> bool:
        return self.capped or self.rate is not None or self.key_rate is not None


def parse_rate(text: str, *, what: str = "rate_limit") -> float:
    """``"60/m"`` (also ``/s``, ``/h``, ``/d``, ``"10/5s"``) as seconds between starts."""
    match = _RATE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"{what} {text!r} is not a rate; write starts per period like '60/m', '5/s', "
            "'1000/h' or '10/5s'"
        )
    count = int(match["count"])
    every = float(match["every"] or 1) * _UNITS[match["unit"][0]]
    interval = every / count if 0 < count < 2**53 else 0.0
    if interval <= 0 or not math.isfinite(interval):
        raise ValueError(
            f"{what} {text!r} must allow at least one start per period, with a period and a "
            "count that are finite positive numbers"
        )
    return interval


def check_cap(value: int | None, what: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{what} must be a whole number of at least 1, not {value!r}")
    return value
