"""GET /v1/schedules and the limits shown by GET /v1/tasks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from servicekit import ACME_READ, TOKENS, Start, build_app

from offload.service import create_app


async def test_schedules_and_task_limits_are_listed(start: Start) -> None:
    svc = await start(tokens=TOKENS)

    @svc.app.periodic(every=timedelta(minutes=5), missed="once", name="digest")
    async def digest() -> None:
        return None

    @svc.app.periodic("0 3 * * *", tz="Europe/Paris", name="nightly", concurrency=1)
    def nightly() -> None:
        return None

    @svc.app.task(name="llm", rate_limit="60/m", key_concurrency=2)
    async def llm(prompt: str) -> str:
        return prompt

    r = await svc.client.get("/v1/schedules", headers=ACME_READ)
    assert r.status_code == 200
    rows = r.json()["schedules"]
    assert [s["name"] for s in rows] == ["digest", "nightly"]
    digest_row, nightly_row = rows
    assert (digest_row["every"], digest_row["missed"], digest_row["cron"]) == (300, "once", None)
    assert (nightly_row["cron"], nightly_row["tz"]) == ("0 3 * * *", "Europe/Paris")
    now = datetime.now(UTC)
    tick = datetime.fromisoformat(digest_row["next_tick"].replace("Z", "+00:00"))
    assert now < tick <= now + timedelta(minutes=5, seconds=5)
    assert int(tick.timestamp()) % 300 == 0

    tasks = {
        t["name"]: t for t in (await svc.client.get("/v1/tasks", headers=ACME_READ)).json()["tasks"]
    }
    assert (tasks["llm"]["rate_limit_interval"], tasks["llm"]["key_concurrency"]) == (1.0, 2)
    assert tasks["nightly"]["concurrency"] == 1
    assert tasks["digest"]["concurrency"] is None

    assert (await svc.client.get("/v1/schedules")).status_code == 401


async def test_an_app_without_schedules_lists_none(start: Start) -> None:
    svc = await start()
    assert (await svc.client.get("/v1/schedules")).json() == {"schedules": []}


def test_the_route_is_in_the_openapi_document() -> None:
    api = create_app(build_app("memory://"))
    assert "/v1/schedules" in api.openapi()["paths"]
