"""Periodic schedules without a worker: declaration errors, tick arithmetic, the listing."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

import offload
from offload.cli import main
from offload.core.schedule import (
    Cron,
    Every,
    Schedule,
    describe_schedules,
    format_seconds,
    iso_utc,
    tick_of,
)


def at(text: str) -> float:
    """Epoch seconds of an ISO time (UTC unless it says otherwise)."""
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@pytest.fixture
def app() -> offload.App:
    return offload.App("memory://")


def noop() -> None:
    return None


# -- declaring ---------------------------------------------------------------------------------
def test_cron_and_every_register_a_task_and_a_schedule(app: offload.App) -> None:
    @app.periodic("*/5 * * * *", name="report", queue="reports", retries=2, timeout=30)
    def report() -> str:
        return "done"

    @app.periodic(every=timedelta(seconds=30), name="heartbeat", missed="once")
    async def beat() -> None:
        return None

    assert report() == "done"  # still a plain task: callable inline, submittable by hand
    assert report.spec.queue == "reports"
    assert (report.spec.retry.retries, report.spec.timeout) == (2, 30)
    assert beat.name == "heartbeat"
    assert beat.spec.executor == "async"
    assert set(app.registry.names()) == {"report", "heartbeat"}
    assert app.schedules["report"] == Schedule("report", "reports", Cron("*/5 * * * *"), "skip")
    assert app.schedules["heartbeat"] == Schedule("heartbeat", "default", Every(30), "once")
    assert app.schedules["heartbeat"].task == "heartbeat"


def test_a_periodic_task_can_be_submitted_by_hand(app: offload.App) -> None:
    @app.periodic(every=timedelta(minutes=1))
    def tidy(limit: int = 10) -> int:
        return limit

    job = tidy.submit(limit=3)
    assert (job.record.kwargs, job.record.meta) == ({"limit": 3}, {})


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("*/5 * * *", r"invalid cron expression '\*/5 \* \* \*': expected 5 fields .*got 4"),
        ("0 */5 * * * *", r"'0 \*/5 \* \* \* \*': expected 5 fields .*got 6"),
        ("61 * * * *", r"invalid cron expression '61 \* \* \* \*': bad minute field"),
        ("0 25 * * *", r"'0 25 \* \* \*': bad hour field"),
        ("*/0 * * * *", r"'\*/0 \* \* \* \*': bad minute field"),
        ("0 0 31 2 *", r"'0 0 31 2 \*': bad day-of-month field"),
        ("0 0 * * FUNDAY", r"'0 0 \* \* FUNDAY': bad day-of-week field"),
        ("@daily", r"invalid cron expression '@daily': expected 5 fields"),
        ("", r"invalid cron expression '': expected 5 fields .*got 0"),
    ],
)
def test_a_malformed_cron_expression_is_rejected_with_its_value(
    app: offload.App, cron: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        app.periodic(cron)


@pytest.mark.parametrize(
    ("every", "message"),
    [
        (timedelta(0), r"every= must be a positive whole number of seconds, not 0 s"),
        (timedelta(seconds=-30), r"not -30 s"),
        (timedelta(milliseconds=1500), r"not 1\.5 s"),
        (30, r"every= must be a datetime\.timedelta, not 30"),
    ],
)
def test_a_bad_interval_is_rejected_with_its_value(
    app: offload.App, every: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        app.periodic(every=every)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("* * * * *",), {"every": timedelta(seconds=5)}, r"not both \(got '\* \* \* \* \*'"),
        ((), {}, r"needs a schedule: @app\.periodic\('\*/5 \* \* \* \*'\)"),
        (("* * * * *",), {"missed": "later"}, r"missed= must be one of skip, once; got 'later'"),
        (("* * * * *",), {"tz": "Mars/Olympus"}, r"unknown time zone 'Mars/Olympus'"),
        (("* * * * *",), {"tz": 7}, r"tz= must be a time zone name .*not 7"),
        ((), {"every": timedelta(1), "tz": "Europe/Paris"}, r"tz='Europe/Paris' applies to cron"),
    ],
)
def test_other_bad_declarations_are_rejected(
    app: offload.App, args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        app.periodic(*args, **kwargs)


def test_bare_decorator_is_rejected(app: offload.App) -> None:
    with pytest.raises(ValueError, match=r"must be a string like '\*/5 \* \* \* \*', not <func"):
        app.periodic(noop)  # type: ignore[arg-type]  # what a bare @app.periodic does


def test_a_task_that_needs_arguments_is_rejected_and_not_registered(app: offload.App) -> None:
    def send(to: str) -> None: ...

    with pytest.raises(ValueError, match=r"periodic task 'send' must be callable without arg"):
        app.periodic("0 * * * *", name="send")(send)
    assert len(app.registry) == 0
    assert app.schedules == {}


def test_one_schedule_per_name(app: offload.App) -> None:
    app.periodic("0 * * * *", name="sweep")(noop)
    with pytest.raises(ValueError, match=r"a schedule named 'sweep' already exists"):
        app.periodic("30 * * * *", name="sweep")(noop)
    assert app.schedules["sweep"].trigger == Cron("0 * * * *")


# -- ticks: pure functions of a time -----------------------------------------------------------
def test_every_ticks_at_multiples_of_its_interval_since_the_epoch() -> None:
    every = Every(30)
    assert every.next_after(at("2025-01-01T00:00:00")) == at("2025-01-01T00:00:30")
    assert every.next_after(at("2025-01-01T00:00:29.9")) == at("2025-01-01T00:00:30")
    assert every.latest_at(at("2025-01-01T00:00:30")) == at("2025-01-01T00:00:30")
    assert every.latest_at(at("2025-01-01T00:00:59.99")) == at("2025-01-01T00:00:30")
    hourly = Every(3600)
    assert hourly.next_after(at("2025-06-01T10:59:59")) == at("2025-06-01T11:00:00")
    assert Every(1).next_after(5.5) == 6


def test_cron_next_tick_is_strictly_after_and_latest_is_at_or_before() -> None:
    cron = Cron("*/5 * * * *")
    assert cron.next_after(at("2025-01-01T00:02:00")) == at("2025-01-01T00:05:00")
    assert cron.next_after(at("2025-01-01T00:05:00")) == at("2025-01-01T00:10:00")
    assert cron.next_after(at("2025-01-01T00:04:59.5")) == at("2025-01-01T00:05:00")
    assert cron.latest_at(at("2025-01-01T00:05:00")) == at("2025-01-01T00:05:00")
    assert cron.latest_at(at("2025-01-01T00:09:59.9")) == at("2025-01-01T00:05:00")
    weekdays = Cron("0 9 * * MON-FRI")
    friday = at("2025-01-03T09:00:01")
    assert weekdays.next_after(friday) == at("2025-01-06T09:00:00")  # the Monday after
    assert weekdays.latest_at(at("2025-01-05T12:00:00")) == at("2025-01-03T09:00:00")


def test_cron_in_a_time_zone_follows_its_offset_and_daylight_saving() -> None:
    paris = ZoneInfo("Europe/Paris")
    at_three = Cron("0 3 * * *", paris)
    assert at_three.next_after(at("2025-01-10T00:00:00")) == at("2025-01-10T02:00:00")  # UTC+1
    assert at_three.next_after(at("2025-07-10T00:00:00")) == at("2025-07-10T01:00:00")  # UTC+2
    # 02:30 does not exist on 2025-03-30 in Paris: it runs once, at 03:00 local (01:00 UTC).
    half_two = Cron("30 2 * * *", paris)
    assert half_two.next_after(at("2025-03-29T12:00:00")) == at("2025-03-30T01:00:00")
    # 02:30 happens twice on 2025-10-26: it runs once.
    autumn = at("2025-10-25T12:00:00")
    first = half_two.next_after(autumn)
    assert first == at("2025-10-26T02:30:00+02:00")
    assert half_two.next_after(first) == at("2025-10-27T02:30:00+01:00")


def test_cron_ticks_stay_consistent_in_the_repeated_hour_of_a_fall_back_night() -> None:
    half_two = Cron("30 2 * * *", ZoneInfo("Europe/Paris"))
    second_pass = at("2025-10-26T01:01:00")  # 02:01 local, after the first 02:30 (00:30 UTC)
    assert half_two.next_after(second_pass) == at("2025-10-27T01:30:00")
    assert half_two.latest_at(second_pass) == at("2025-10-26T00:30:00")
    for expr in ("30 2 * * *", "*/10 * * * *", "0 1-3 * * *"):
        cron = Cron(expr, ZoneInfo("Europe/Paris"))
        for moment in range(int(at("2025-10-25T22:00:00")), int(at("2025-10-26T04:00:00")), 293):
            latest, following = cron.latest_at(moment), cron.next_after(moment)
            assert latest is not None
            assert latest <= moment < following, (expr, iso_utc(moment))
            assert cron.next_after(latest) == following, (expr, iso_utc(moment))


def test_schedule_keys_meta_and_description() -> None:
    schedule = Schedule("report", "reports", Cron("0 3 * * *", ZoneInfo("Asia/Tokyo")), "once")
    tick = int(at("2025-01-01T18:00:00"))
    assert schedule.idempotency_key(tick) == f"periodic:report:{tick}"
    meta = schedule.tick_meta(tick)
    assert meta == {"periodic": "report", "tick": "2025-01-01T18:00:00+00:00"}
    assert tick_of(meta, "report") == tick
    assert tick_of(meta, "other") is None
    assert tick_of({"periodic": "report", "tick": "yesterday"}, "report") is None
    assert schedule.describe(at("2025-01-01T12:00:00")) == {
        "name": "report",
        "task": "report",
        "queue": "reports",
        "schedule": "0 3 * * * (Asia/Tokyo)",
        "cron": "0 3 * * *",
        "every": None,
        "tz": "Asia/Tokyo",
        "missed": "once",
        "next_tick": "2025-01-01T18:00:00+00:00",
    }
    assert iso_utc(0) == "1970-01-01T00:00:00+00:00"
    assert [format_seconds(s) for s in (1, 90, 3600, 86400 + 61)] == ["1s", "1m30s", "1h", "1d1m1s"]


def test_describe_schedules_lists_every_schedule_by_name(app: offload.App) -> None:
    app.periodic(every=timedelta(minutes=15), name="b_every")(noop)
    app.periodic("0 3 * * *", name="a_cron", tz="UTC")(noop)
    rows = describe_schedules(app, at("2025-01-01T02:50:00"))
    assert [(r["name"], r["schedule"], r["next_tick"]) for r in rows] == [
        ("a_cron", "0 3 * * *", "2025-01-01T03:00:00+00:00"),
        ("b_every", "every 15m", "2025-01-01T03:00:00+00:00"),
    ]
    assert rows[1]["every"] == 900
    assert rows[1]["tz"] is None
    assert rows[0]["tz"] == "UTC"


# -- the CLI -----------------------------------------------------------------------------------
APP_SOURCE = """
from datetime import timedelta
import offload

app = offload.App()

@app.periodic("0 3 * * *", tz="Europe/Paris", missed="once", queue="reports")
def nightly() -> None: ...

@app.periodic(every=timedelta(seconds=30))
async def heartbeat() -> None: ...
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "schedapp.py").write_text(APP_SOURCE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("OFFLOAD_BACKEND", f"sqlite:///{tmp_path}/jobs.db")
    monkeypatch.delitem(sys.modules, "schedapp", raising=False)
    return tmp_path


def test_cli_lists_schedules_as_text_and_json(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schedules", "schedapp:app"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TASK", "QUEUE", "SCHEDULE", "NEXT", "TICK", "(UTC)", "MISSED"]
    assert lines[1].split()[:3] == ["heartbeat", "default", "every"]
    assert lines[1].split()[-1] == "skip"
    assert lines[2].split()[:2] == ["nightly", "reports"]
    assert "0 3 * * * (Europe/Paris)" in lines[2]
    assert lines[2].split()[-1] == "once"

    assert main(["schedules", "schedapp:app", "--json"]) == 0
    rows = orjson.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["heartbeat", "nightly"]
    nightly = rows[1]
    assert (nightly["cron"], nightly["tz"]) == ("0 3 * * *", "Europe/Paris")
    next_tick = datetime.fromisoformat(nightly["next_tick"])
    assert next_tick.astimezone(ZoneInfo("Europe/Paris")).hour == 3
    assert timedelta(0) < next_tick - datetime.now(UTC) <= timedelta(days=1)


def test_cli_with_an_app_without_schedules(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "plainapp.py").write_text("import offload\napp = offload.App()\n")
    assert main(["schedules", "plainapp:app"]) == 0
    assert "(no schedules)" in capsys.readouterr().out
