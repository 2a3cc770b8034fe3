"""Retention: how long finished jobs are kept, by outcome and by count per queue.

Two rules bound what a backend holds, so its memory (or file) plateaus under a steady load:

- **by age and outcome**: a job that ended is kept ``succeeded``/``failed``/``cancelled`` seconds
  after it ended (None: no age limit), the App's :class:`Retention` or its task's;
- **by count**: at most ``max_finished`` ended jobs per queue, the oldest pruned first.

A job submitted with a ``result_ttl`` (set on its task, its App or its submit) keeps that
meaning: it is deleted ``result_ttl`` seconds after it ended, whatever its outcome, and the
ages by outcome do not apply to it; the count per queue still does. Running, queued and
scheduled jobs are never pruned. Workers apply the policy every ``prune_interval``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from offload.core.states import State

HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY

#: The outcomes a job ends with, in the order policies list them.
OUTCOMES = (State.SUCCEEDED, State.FAILED, State.CANCELLED)


def _check_age(value: float | None, name: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be seconds (a number) or None, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite seconds >= 0 or None, not {value!r}")


@dataclass(frozen=True, slots=True)
class Retention:
    """Seconds a job is kept after it ended, by outcome (None: no age limit)."""

    succeeded: float | None = DAY
    failed: float | None = WEEK
    cancelled: float | None = WEEK

    def __post_init__(self) -> None:
        for outcome in OUTCOMES:
            _check_age(getattr(self, outcome.value), f"retention {outcome.value}")

    def age(self, outcome: State) -> float | None:
        """How long a job that ended with ``outcome`` is kept (None: no limit by age)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"{outcome.value} is not an outcome a job ends with")
        value: float | None = getattr(self, outcome.value)
        return value


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """What a prune applies: the App's retention, its tasks' own, and the count per queue."""

    default: Retention = field(default_factory=Retention)
    #: task name -> its retention, for tasks that set one
    tasks: Mapping[str, Retention] = field(default_factory=dict)
    #: ended jobs kept per queue at most (the oldest beyond are pruned); None: no cap
    max_finished: int | None = 100_000

    def __post_init__(self) -> None:
        cap = self.max_finished
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
            raise ValueError(f"max_finished must be a whole number >= 0 or None, not {cap!r}")

    def age(self, task: str, outcome: State) -> float | None:
        """How long a job of ``task`` that ended with ``outcome`` is kept."""
        return self.tasks.get(task, self.default).age(outcome)

    def shortest(self, outcome: State) -> float | None:
        """The shortest age any task has for ``outcome`` (None: no task limits it by age):
        no job that ended later than ``now - shortest`` can be due."""
        ages = [r.age(outcome) for r in (self.default, *self.tasks.values())]
        known = [a for a in ages if a is not None]
        return min(known) if known else None

    def as_json(self) -> dict[str, Any]:
        """The policy as JSON values, ages of None as -1 (what the Redis script reads)."""

        def ages(r: Retention) -> dict[str, float]:
            return {o.value: -1.0 if r.age(o) is None else float(r.age(o) or 0) for o in OUTCOMES}

        shortest = {o.value: -1.0 if (s := self.shortest(o)) is None else s for o in OUTCOMES}
        return {
            "default": ages(self.default),
            "tasks": {name: ages(r) for name, r in self.tasks.items()},
            "shortest": shortest,
            "cap": -1 if self.max_finished is None else self.max_finished,
        }
