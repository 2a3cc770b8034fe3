"""The claim-time decision for jobs of limited tasks, shared by the memory and SQLite backends
(the Redis backend does the same in Lua): start now, wait for a slot, or defer to a later start.

Concurrency caps count running jobs that were submitted under a cap, per task (``t\\0<task>``)
and per task and concurrency key (``k\\0<task>\\0<key>``). A job at its cap stays queued and is
skipped, so jobs behind it still start. Rate limits are spread evenly: each bucket holds the
time its next start is allowed (a theoretical arrival time). A job that may not start yet is
deferred (queued -> scheduled) to that time, and the start is reserved for it there, so it is
deferred once and burns no attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from offload.core.limits import Limits


class Slot(NamedTuple):
    """A counter of running capped jobs: its name, its cap, and what it counts (the task, and
    the concurrency key for a per-key slot). Read ``task`` and ``key``, never split ``name``:
    a key may hold any character."""

    name: str
    cap: int
    task: str
    key: str | None


def slot_names(task: str, key: str | None, limits: Limits) -> list[Slot]:
    """The counters a job of ``task`` takes while it runs, with their caps."""
    names: list[Slot] = []
    if limits.concurrency is not None:
        names.append(Slot(f"t\0{task}", limits.concurrency, task, None))
    if limits.key_concurrency is not None and key is not None:
        names.append(Slot(f"k\0{task}\0{key}", limits.key_concurrency, task, key))
    return names


def bucket_names(task: str, key: str | None, limits: Limits) -> list[tuple[str, float]]:
    """The rate buckets a start of ``task`` draws from, with their intervals."""
    names: list[tuple[str, float]] = []
    if limits.rate is not None:
        names.append((f"t\0{task}", limits.rate))
    if limits.key_rate is not None and key is not None:
        names.append((f"k\0{task}\0{key}", limits.key_rate))
    return names


class Gate:
    """One claim's view of the limits: counters and buckets are read once, then kept here.

    ``running(slot)`` counts running capped jobs holding a slot; ``next_start(name)`` reads a
    bucket (None: never used). After the claim, write back :attr:`buckets`.
    """

    def __init__(
        self,
        now: float,
        running: Callable[[Slot], int],
        next_start: Callable[[str], float | None],
    ) -> None:
        self.now = now
        self._running = running
        self._next_start = next_start
        self._counts: dict[str, int] = {}
        self.buckets: dict[str, float] = {}  # bucket name -> its next allowed start

    def _count(self, slot: Slot) -> int:
        if slot.name not in self._counts:
            self._counts[slot.name] = self._running(slot)
        return self._counts[slot.name]

    def _bucket(self, name: str) -> float:
        if name not in self.buckets:
            stored = self._next_start(name)
            self.buckets[name] = self.now if stored is None else stored
        return self.buckets[name]

    def full(self, task: str, key: str | None, limits: Limits) -> bool:
        """Whether a job of ``task`` would find one of its slots full now."""
        return any(self._count(slot) >= slot.cap for slot in slot_names(task, key, limits))

    def decide(self, task: str, key: str | None, limits: Limits, reserved: bool) -> bool | float:
        """True: start it now (its slots are taken). False: no free slot, leave it queued.
        A float: defer it to that time, where its start is reserved (``reserved`` jobs have
        one already and skip the rate limit)."""
        if self.full(task, key, limits):
            return False
        slots = slot_names(task, key, limits)
        if not reserved:
            buckets = bucket_names(task, key, limits)
            start = max([self.now, *(self._bucket(name) for name, _ in buckets)])
            for name, interval in buckets:
                self.buckets[name] = start + interval
            if start > self.now:
                return start
        for slot in slots:
            self._counts[slot.name] += 1
        return True
