"""Periodic schedules: when the ticks of a periodic task fall. Pure: no I/O, no clock.

A tick is a whole number of epoch seconds, computed the same way by every worker, so that a
tick names one job everywhere (see :meth:`Schedule.idempotency_key`).

- :class:`Cron`: a 5-field cron expression (minute hour day-of-month month day-of-week),
  evaluated by cronsim in a time zone (UTC by default; daylight-saving changes follow Debian
  cron: a skipped local time runs once at the next valid time, a repeated one runs once).
- :class:`Every`: the multiples of a whole number of seconds counted from the Unix epoch
  (``every=timedelta(hours=1)`` ticks at the top of each UTC hour).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal, Protocol, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

MissedPolicy = Literal["skip", "once"]
MISSED_POLICIES: tuple[MissedPolicy, ...] = get_args(MissedPolicy)
CRON_FIELDS = "minute hour day-of-month month day-of-week"


@dataclass(frozen=True, slots=True)
class Cron:
    """Ticks at the times a 5-field cron expression names, read in ``tz``."""

    expr: str
    tz: tzinfo = UTC

    def next_after(self, t: float) -> int:
        """The first tick strictly after ``t``."""
        for moment in CronSim(self.expr, datetime.fromtimestamp(t, self.tz)):
            # In the repeated hour of a fall-back night, cronsim (searching in local time) may
            # answer the first pass of a time already gone: go on to the next.
            if moment.timestamp() > t:
                return int(moment.timestamp())
        raise ValueError(f"cron expression {self.expr!r} never fires after {iso_utc(t)}")

    def latest_at(self, t: float) -> int | None:
        """The last tick at or before ``t`` (None if there is none in the last 50 years)."""
        # cronsim steps back one second before searching: start just past t's whole second.
        start = datetime.fromtimestamp(int(t // 1) + 1, self.tz)
        moments = (int(m.timestamp()) for m in CronSim(self.expr, start, reverse=True))
        latest = next((m for m in moments if m <= t), None)
        if latest is None:
            return None
        # Searching back in local time can miss a tick in a repeated hour: check forwards.
        following = self.next_after(latest)
        while following <= t:
            latest, following = following, self.next_after(following)
        return latest

    def describe(self) -> str:
        return self.expr if self.tz is UTC else f"{self.expr} ({self.tz})"


@dataclass(frozen=True, slots=True)
class Every:
    """Ticks at every multiple of ``seconds`` since 1970-01-01 00:00 UTC."""

    seconds: int

    def next_after(self, t: float) -> int:
        return (int(t // self.seconds) + 1) * self.seconds

    def latest_at(self, t: float) -> int | None:
        return int(t // self.seconds) * self.seconds

    def describe(self) -> str:
        return f"every {format_seconds(self.seconds)}"


Trigger = Cron | Every


@dataclass(frozen=True, slots=True)
class Schedule:
    """A periodic task's schedule: its ``name`` is the task's name."""

    name: str
    queue: str
    trigger: Trigger
    missed: MissedPolicy = "skip"

    @property
    def task(self) -> str:
        return self.name

    def next_tick(self, now: float) -> int:
        """The first tick strictly after ``now``."""
        return self.trigger.next_after(now)

    def latest_tick(self, now: float) -> int | None:
        """The last tick at or before ``now``."""
        return self.trigger.latest_at(now)

    def idempotency_key(self, tick: int) -> str:
        """The key every worker submits this tick under, so the backend keeps one job."""
        return f"periodic:{self.name}:{tick}"

    def tick_meta(self, tick: int) -> dict[str, Any]:
        return {"periodic": self.name, "tick": iso_utc(tick)}

    def describe(self, now: float) -> dict[str, Any]:
        """This schedule as JSON data, with its next tick after ``now``."""
        trigger = self.trigger
        return {
            "name": self.name,
            "task": self.task,
            "queue": self.queue,
            "schedule": trigger.describe(),
            "cron": trigger.expr if isinstance(trigger, Cron) else None,
            "every": trigger.seconds if isinstance(trigger, Every) else None,
            "tz": str(trigger.tz) if isinstance(trigger, Cron) else None,
            "missed": self.missed,
            "next_tick": iso_utc(self.next_tick(now)),
        }


class HasSchedules(Protocol):
    """Anything with schedules by name (an :class:`offload.App`)."""

    @property
    def schedules(self) -> Mapping[str, Schedule]: ...


def describe_schedules(app: HasSchedules, now: float) -> list[dict[str, Any]]:
    """Every schedule of ``app`` as JSON data, by name; ``now`` is the backend's clock."""
    return [app.schedules[name].describe(now) for name in sorted(app.schedules)]


# -- declaring ---------------------------------------------------------------------------------
def make_trigger(
    cron: object = None, every: object = None, tz: str | tzinfo | None = None
) -> Trigger:
    """Check a declaration's ``cron``/``every``/``tz`` and build its trigger (ValueError)."""
    if cron is not None and every is not None:
        raise ValueError(
            f"give a cron expression or every=, not both (got {cron!r} and every={every!r})"
        )
    if every is not None:
        if tz is not None:
            raise ValueError(f"tz={tz!r} applies to cron schedules only; every= counts in UTC")
        return Every(_every_seconds(every))
    if cron is None:
        raise ValueError(
            "a periodic task needs a schedule: @app.periodic('*/5 * * * *') or "
            "@app.periodic(every=timedelta(seconds=30))"
        )
    return _cron(cron, _zone(tz))


def check_missed(missed: object) -> MissedPolicy:
    for policy in MISSED_POLICIES:
        if missed == policy:
            return policy
    raise ValueError(f"missed= must be one of {', '.join(MISSED_POLICIES)}; got {missed!r}")


def check_no_arguments(func: Callable[..., Any], name: str) -> None:
    """Ticks pass no arguments: every parameter needs a default."""
    try:
        inspect.signature(func).bind()
    except TypeError as exc:
        raise ValueError(
            f"periodic task {name!r} must be callable without arguments ({exc})"
        ) from None


def _cron(expr: object, tz: tzinfo) -> Cron:
    if not isinstance(expr, str):
        raise ValueError(
            f"a cron expression must be a string like '*/5 * * * *', not {expr!r} "
            "(use @app.periodic(...) with its schedule, not bare @app.periodic)"
        )
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(
            f"invalid cron expression {expr!r}: expected 5 fields ({CRON_FIELDS}), "
            f"got {len(fields)}"
        )
    trigger = Cron(" ".join(fields), tz)
    try:
        trigger.next_after(0.0)
    except CronSimError as exc:
        raise ValueError(f"invalid cron expression {expr!r}: {str(exc).lower()} field") from None
    return trigger


def _zone(tz: str | tzinfo | None) -> tzinfo:
    if tz is None or tz == "UTC":
        return UTC
    if isinstance(tz, tzinfo):
        return tz
    if not isinstance(tz, str):
        raise ValueError(f"tz= must be a time zone name like 'Europe/Paris', not {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r}; use an IANA name, e.g. 'Asia/Tokyo'") from None


def _every_seconds(every: object) -> int:
    if not isinstance(every, timedelta):
        raise ValueError(f"every= must be a datetime.timedelta, not {every!r}")
    seconds = every.total_seconds()
    if seconds <= 0 or seconds != int(seconds):
        raise ValueError(
            f"every= must be a positive whole number of seconds, not {seconds:g} s ({every!r})"
        )
    return int(seconds)


# -- formatting --------------------------------------------------------------------------------
def iso_utc(tick: float) -> str:
    """``2025-01-31T03:00:00+00:00``."""
    return datetime.fromtimestamp(tick, UTC).isoformat()


def tick_of(meta: Mapping[str, Any], name: str) -> int | None:
    """The tick a job was fired for, if its meta says it is a tick of schedule ``name``."""
    if meta.get("periodic") != name or not isinstance(meta.get("tick"), str):
        return None
    try:
        return int(datetime.fromisoformat(meta["tick"]).timestamp())
    except ValueError:
        return None


def format_seconds(seconds: int) -> str:
    """``90`` -> ``1m30s``; ``86400`` -> ``1d``."""
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
