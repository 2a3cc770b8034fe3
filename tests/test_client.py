"""The client API: App, tasks, submit options, job handles (sync and async faces)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

import offload
from offload.backends.memory import MemoryBackend
from offload.core.clock import ManualClock
from offload.core.job import Lease


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def backend(clock: ManualClock) -> MemoryBackend:
    return MemoryBackend(clock=clock)


@pytest.fixture
def app(backend: MemoryBackend) -> Iterator[offload.App]:
    app = offload.App(backend)
    yield app
    app.close()


def test_calling_a_task_runs_it_inline(app: offload.App) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    assert add(2, 3) == 5
    assert add.name == "test_calling_a_task_runs_it_inline.<locals>.add"


def test_submit_stores_a_queued_job_with_encoded_arguments(
    app: offload.App, backend: MemoryBackend
) -> None:
    @app.task(name="mail", queue="email", priority=3)
    def send(to: str, *, subject: str = "") -> None: ...

    job = send.submit("a@example.com", subject="hi")
    assert job.status is offload.State.QUEUED
    assert (job.record.queue, job.record.priority) == ("email", 3)
    assert (job.record.args, job.record.kwargs) == (["a@example.com"], {"subject": "hi"})
    assert app.get_job(job.id).record == job.record


def test_bad_arguments_store_nothing(app: offload.App) -> None:
    @app.task
    def send(to: str) -> None: ...

    with pytest.raises(offload.InvalidArguments, match="missing a required argument"):
        send.submit()
    with pytest.raises(offload.InvalidArguments, match="'to'"):
        send.submit(["not", "a", "string"])  # type: ignore[arg-type]
    assert app.jobs() == []


async def test_asubmit_and_options(app: offload.App, clock: ManualClock) -> None:
    @app.task
    async def render(page: int) -> str:
        return f"page {page}"

    job = await render.options(delay=30, priority=9, queue="pdf").asubmit(1)
    assert job.status is offload.State.SCHEDULED
    assert job.record.run_at == clock.now() + 30
    assert (job.record.priority, job.record.queue) == (9, "pdf")
    await app.aclose()


def test_idempotency_key_returns_the_same_job_or_conflicts(app: offload.App) -> None:
    @app.task
    def charge(order: int) -> None: ...

    first = charge.options(idempotency_key="order-1").submit(1)
    again = charge.options(idempotency_key="order-1").submit(1)
    assert again.id == first.id
    with pytest.raises(offload.IdempotencyConflict, match="order-1"):
        charge.options(idempotency_key="order-1").submit(2)
    assert len(app.jobs()) == 1


def test_result_waits_and_reports_failure_and_cancel(
    app: offload.App, backend: MemoryBackend
) -> None:
    @app.task
    def work() -> int:
        return 1

    job = work.submit()
    with pytest.raises(offload.WaitTimeout, match="still queued"):
        job.result(timeout=0.05)

    async def finish(result: object, fail: bool) -> None:
        [claimed] = await backend.claim("w", {"default": 1}, 1, 30)
        lease = Lease(claimed.id, claimed.token)
        if fail:
            await backend.fail(lease, {"type": "ValueError", "message": "bad"})
        else:
            await backend.complete(lease, result)

    app.run_sync(finish({"answer": 42}, fail=False))
    assert job.result(timeout=1) == {"answer": 42}
    assert job.status is offload.State.SUCCEEDED

    failing = work.submit()
    app.run_sync(finish(None, fail=True))
    with pytest.raises(offload.JobFailed, match="ValueError: bad") as info:
        failing.result(timeout=1)
    assert info.value.error["message"] == "bad"

    cancelled = work.submit().cancel()
    assert cancelled.status is offload.State.CANCELLED
    with pytest.raises(offload.JobCancelled):
        cancelled.result(timeout=1)


def test_retry_of_a_failed_job_makes_a_linked_new_job(
    app: offload.App, backend: MemoryBackend
) -> None:
    @app.task
    def work(n: int) -> None: ...

    job = work.submit(7).cancel()
    again = app.retry(job.id)
    assert again.id != job.id
    assert again.record.args == [7]
    assert again.record.meta["retry_of"] == job.id
    with pytest.raises(offload.InvalidTransition):
        app.retry(again.id)  # queued: nothing to retry


def test_unknown_ids_and_tasks_are_clear_errors(app: offload.App) -> None:
    with pytest.raises(offload.JobNotFound, match="nope"):
        app.get_job("nope")
    with pytest.raises(offload.TaskNotFound, match="known tasks"):
        app.run_sync(app.asubmit_name("nope"))


def test_history_is_readable_through_the_handle(app: offload.App) -> None:
    @app.task
    def work() -> None: ...

    job = work.submit().cancel()
    reasons = [t.reason.value for t in job.history()]
    assert reasons == ["submitted", "cancelled"]


def test_jobs_filters(app: offload.App) -> None:
    @app.task
    def a() -> None: ...

    @app.task(queue="other")
    def b() -> None: ...

    a.submit()
    b.submit()
    b.submit().cancel()
    assert len(app.jobs()) == 3
    assert len(app.jobs(queue="other")) == 2
    assert len(app.jobs(status="cancelled")) == 1
    assert [j.record.task for j in app.jobs(task=a.name)] == [a.name]


def test_app_reads_backend_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFLOAD_BACKEND", "memory://")
    assert offload.App().settings.backend == "memory://"
    monkeypatch.setenv("OFFLOAD_LEASE_SECONDS", "soon")
    with pytest.raises(offload.ConfigurationError, match="OFFLOAD_LEASE_SECONDS"):
        offload.App()


def test_bad_backend_urls_say_what_to_use(tmp_path: object) -> None:
    for url, match in [
        ("mysql://x", "unsupported backend URL scheme"),
        ("nothing", "has no scheme"),
        ("sqlite:///db.sqlite?colour=red", "unknown SQLite URL option"),
        ("sqlite:///x.db?synchronous=sometimes", "synchronous must be one of"),
    ]:
        with pytest.raises(offload.ConfigurationError, match=match):
            offload.App(url).new_backend()
    app = offload.App("sqlite:////nonexistent-folder/x.db")
    with pytest.raises(offload.ConfigurationError, match="does not exist"):
        app.jobs()
    app.close()


def test_settings_intervals_follow_the_lease_unless_set() -> None:
    default = offload.Settings()
    assert (default.renew_interval, default.reap_interval) == (10.0, 10.0)
    short = default.with_(lease_seconds=6)
    assert (short.renew_interval, short.reap_interval) == (2.0, 2.0)
    pinned = offload.Settings(renew_interval=1.0).with_(lease_seconds=90)
    assert (pinned.renew_interval, pinned.reap_interval) == (1.0, 30.0)
    with pytest.raises(offload.ConfigurationError, match="must be shorter"):
        offload.Settings(lease_seconds=5, renew_interval=10)


@pytest.mark.parametrize(
    "options",
    [
        {"run_at": 253402300800},  # a second past 9999-12-31T23:59:59Z: seconds, never ms
        {"run_at": -1},
        {"run_at": True},
        {"run_at": float("nan")},
        {"run_at": "9999-12-31T23:59:59-12:00"},
        {"run_at": 2_000_000_000, "delay": 5},
        {"queue": "a\x00b"},
        {"concurrency_key": "<no spaces>"},
    ],
)
def test_bad_submit_options_are_refused_before_anything_is_stored(
    app: offload.App, options: dict[str, object]
) -> None:
    @app.task
    def noop() -> None: ...

    with pytest.raises(ValueError, match=r"run_at|queue|concurrency_key"):
        noop.options(**options).submit()
    assert app.jobs() == []


def test_a_task_queue_name_keeps_to_the_character_set(app: offload.App) -> None:
    with pytest.raises(ValueError, match="queue name"):
        app.task(queue="pdf\n")(lambda: None)


def test_arguments_json_cannot_hold_are_invalid(app: offload.App) -> None:
    @app.task
    def take(x: object) -> None: ...

    for bad in (float("inf"), [float("nan")], {"x": -float("inf")}):
        with pytest.raises(offload.InvalidArguments, match="JSON cannot represent"):
            take.submit(bad)
    deep: object = 1
    for _ in range(100):
        deep = [deep]
    with pytest.raises(offload.InvalidArguments, match="nested more than"):
        take.submit(deep)
    assert app.jobs() == []


def test_an_idempotency_key_covers_every_submit_option(app: offload.App) -> None:
    @app.task
    def charge(order: int) -> None: ...

    first = charge.options(idempotency_key="order-9").submit(1)
    for change in (
        {"priority": 3},
        {"delay": 10},
        {"run_at": 2_000_000_000},
        {"concurrency_key": "c"},
    ):
        with pytest.raises(offload.IdempotencyConflict):
            charge.options(idempotency_key="order-9", **change).submit(1)
    assert [j.id for j in app.jobs()] == [first.id]


@pytest.mark.parametrize("batch", [0, -1, 10**20, True])
def test_prune_refuses_a_batch_out_of_range(app: offload.App, batch: int) -> None:
    # offload prune --batch 10**20 printed an OverflowError traceback from SQLite.
    with pytest.raises(ValueError, match="batch"):
        app.run_sync(app.aprune(batch))


@pytest.mark.parametrize("meta", [{"a": math.nan}, {"a": [math.inf]}, {"a": object()}, ["x"]])
def test_meta_json_cannot_hold_is_refused_before_anything_is_stored(
    app: offload.App, meta: object
) -> None:
    # NaN in meta was stored as null without a word; an object failed inside the backend.
    @app.task
    def noop() -> None: ...

    with pytest.raises((ValueError, offload.SerializationError), match=r"meta|JSON"):
        noop.options(meta=meta).submit()
    assert app.jobs() == []
