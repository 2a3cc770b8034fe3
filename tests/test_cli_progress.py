"""``offload submit --wait``: a progress bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace

from offload import console
from offload.cli_progress import ProgressView, bar, describe
from offload.client import App
from offload.core.job import JobRecord, Lease
from offload.core.states import State


def _record(**changes: object) -> JobRecord:
    base = JobRecord(
        id="j1",
        task="t",
        queue="default",
        status=State.QUEUED,
        args=[],
        kwargs={},
        priority=0,
        attempts=0,
        losses=0,
        run_at=0.0,
        created_at=0.0,
        updated_at=0.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_bar_and_describe() -> None:
    assert bar(0.5, 10) == "[#####.....]"
    assert bar(2.0, 4) == "[####]"
    assert bar(-1, 4) == "[....]"
    assert describe(_record()) == "queued"
    record = _record(status=State.RUNNING, progress=0.4, progress_message="step 2 of 5")
    assert describe(record) == "running 40% step 2 of 5"


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    view = ProgressView(out, tty=False)
    for record in (
        _record(),
        _record(),
        _record(status=State.RUNNING),
        _record(status=State.RUNNING, progress=0.5, progress_message="half"),
        _record(status=State.SUCCEEDED, progress=1.0),
    ):
        view.update(record)
    view.close()
    assert out.getvalue().splitlines() == [
        "j1 queued",
        "j1 running",
        "j1 running 50% half",
        "j1 succeeded 100%",
    ]
    assert "\r" not in out.getvalue()


def test_a_bar_redrawn_in_place_on_a_terminal() -> None:
    out = io.StringIO()
    view = ProgressView(out, tty=True)
    view.update(_record(status=State.RUNNING))
    assert out.getvalue() == "\rj1 running"  # no progress reported yet: no bar
    view.update(_record(status=State.RUNNING, progress=0.25, progress_message="a quarter"))
    assert out.getvalue().endswith("\r[#######.......................]  25% a quarter")
    assert "\n" not in out.getvalue()
    view.close()
    drawn = len("[#######.......................]  25% a quarter")
    assert out.getvalue().endswith("\r" + " " * drawn + "\r")


def test_follow_shows_the_progress_a_worker_reports() -> None:
    app = App("memory://")

    @app.task(name="slow")
    def slow() -> None:
        return None

    out = io.StringIO()

    async def scenario() -> None:
        job = await app.asubmit_name("slow", [], {})
        backend = await app.backend()
        waiting = asyncio.create_task(console.follow(job, 10, ProgressView(out, tty=False)))
        [claimed] = await backend.claim("w", {"default": 1}, 1, 30.0)
        lease = Lease(claimed.id, claimed.token)
        for fraction in (0.3, 0.6):
            await backend.progress(lease, fraction, f"at {fraction}")
            while f"{fraction * 100:.0f}%" not in out.getvalue():
                await asyncio.sleep(0.02)
        await backend.complete(lease, None)
        await waiting

    with app:
        app.run_sync(scenario())
    lines = out.getvalue().splitlines()
    assert lines[-1].endswith("succeeded 60% at 0.6")
    assert any(line.endswith("running 30% at 0.3") for line in lines)
