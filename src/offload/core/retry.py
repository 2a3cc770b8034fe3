"""Retry policy: exponential backoff with jitter, pure and seedable."""

from __future__ import annotations

import random
from dataclasses import dataclass

from offload.core.bounds import check_delay


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times a failed job runs again, and how long it waits before each retry.

    The n-th retry waits ``min(max_delay, base_delay * factor ** (n - 1))`` seconds, scaled by a
    random factor in ``[1 - jitter, 1]`` so that retries of many jobs do not arrive together.
    """

    retries: int = 0
    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 300.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        retries = self.retries
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a whole number >= 0, not {retries!r}")
        check_delay(self.base_delay, "retry_backoff")
        check_delay(self.max_delay, "retry_backoff_max")
        if not self.factor >= 1:  # NaN fails this too
            raise ValueError("backoff factor must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    def allows_retry(self, attempt: int) -> bool:
        """Whether a job whose ``attempt``-th run just failed may run again."""
        return attempt <= self.retries

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``attempt``-th run failed (attempt counts from 1)."""
        exponent = max(0, attempt - 1)
        raw = self.base_delay * self.factor**exponent if exponent < 64 else self.max_delay
        capped = min(self.max_delay, raw)
        draw = (rng or random).random()
        return capped * (1.0 - self.jitter * draw)
