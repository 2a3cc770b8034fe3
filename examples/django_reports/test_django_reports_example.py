"""The Django reports site from its README: gunicorn, ``manage.py offload_worker``, reports
enqueued on commit and followed on a status page; checked from what offload recorded."""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING

import httpx
import pytest

import offload

if TYPE_CHECKING:
    from conftest import RunExample  # the fixture's type (pytest passes the fixture)

pytestmark = pytest.mark.slow  # real servers and workers, seconds each


def test_reports_are_enqueued_and_built_by_the_worker(run_example: RunExample) -> None:
    site = run_example("django_reports")
    with httpx.Client(base_url=site.base, timeout=10) as client:
        assert client.post("/reports", json={"rows": "many"}).status_code == 400
        asked = []
        for n in range(6):
            answer = client.post("/reports", json={"client": f"c{n}", "rows": 20_000})
            assert answer.status_code == 202, answer.text
            assert answer.headers["location"] == f"/reports/{answer.json()['id']}"
            asked.append(answer.json()["id"])
        deadline = time.monotonic() + 30
        for report_id in asked:
            while (page := client.get(f"/reports/{report_id}").json())["status"] != "SUCCESSFUL":
                assert page["status"] in ("READY", "RUNNING"), page
                assert time.monotonic() < deadline, page
                time.sleep(0.1)
            report = page["report"]
            assert report["sha256"] == hashlib.sha256(report["csv"].encode()).hexdigest()
        assert client.get("/reports/999").status_code == 404
    with offload.App(f"sqlite:///{site.data / 'offload.db'}") as app:
        jobs = app.jobs(limit=100)
    assert {(j.record.task, j.record.queue, j.status) for j in jobs} == {
        ("reports.tasks.build_report", "reports", "succeeded")
    }
    assert len(jobs) == len(asked)  # one job per report, none for the refused request
