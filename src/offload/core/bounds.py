"""Bounds on the numbers a job carries, checked at every edge and again in every backend.

Seconds (delays, TTLs, timeouts, rate intervals) and due times must be finite: NaN or infinity
in a due time or score would leave a job in no queue. Priorities are whole numbers in the
32-bit range the HTTP API accepts, far below 2**53 where float scores stop being exact.
"""

from __future__ import annotations

import math
from typing import Any

PRIORITY_MIN = -(2**31)
PRIORITY_MAX = 2**31 - 1
#: The longest delay (ten years): far enough for any real schedule, near enough that a due time
#: of now plus it stays within what every backend and client can hold.
MAX_DELAY = 10 * 365 * 24 * 3600.0


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number of seconds, not {value!r}")
    try:
        number = float(value)
    except OverflowError:  # a whole number beyond any float
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number of seconds, not {_show(value)}")
    return number


def _show(value: Any) -> str:
    return repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:20]}... (a huge number)"


def check_finite(value: Any, what: str) -> float:
    """``value`` as a finite float (any sign), else ValueError."""
    return _number(value, what)


def check_seconds(value: Any, what: str, *, positive: bool = False) -> float:
    """``value`` as float seconds: finite and >= 0 (> 0 when ``positive``), else ValueError."""
    number = _number(value, what)
    if number < 0 or (positive and number == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{what} must be {bound} seconds, not {value!r}")
    return number


def check_delay(value: Any, what: str = "delay") -> float:
    """A delay in seconds: finite, from 0 to :data:`MAX_DELAY`, else ValueError."""
    number = check_seconds(value, what)
    if number > MAX_DELAY:
        raise ValueError(
            f"{what} must be at most {MAX_DELAY:.0f} seconds (ten years), not {_show(value)}"
        )
    return number


def check_time(value: Any, what: str = "run_at") -> float:
    """An absolute due time (epoch seconds): finite, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite time in epoch seconds, not {value!r}")
    return float(value)


def check_priority(value: Any, what: str = "priority") -> int:
    """A priority: a whole number from PRIORITY_MIN to PRIORITY_MAX, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be a whole number, not {value!r}")
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise ValueError(
            f"{what} must be from {PRIORITY_MIN} to {PRIORITY_MAX} (32-bit), not {value!r}"
        )
    return value
