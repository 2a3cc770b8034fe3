"""The roles API from its README: real web app and worker on a real SQLite HR database."""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import RunExample  # the fixture's type (pytest passes the fixture)

pytestmark = pytest.mark.slow  # real servers and workers, seconds each


def expected(path: str, department: str, title: str, level: int) -> dict[str, object]:
    """What the role's queries must find, computed here with plain SQL of the test's own."""
    with sqlite3.connect(path) as conn:
        low, high = conn.execute(
            "SELECT min(salary), max(salary) FROM employees WHERE title = ? AND level = ?",
            (title, level),
        ).fetchone()
        counts = conn.execute(
            "SELECT skill, count(*) FROM skills JOIN employees ON id = employee_id "
            "WHERE title = ? GROUP BY skill",
            (title,),
        ).fetchall()
    conn.close()
    skills = [skill for skill, _ in sorted(counts, key=lambda row: (-row[1], row[0]))[:5]]
    return {
        "department": department,
        "title": title,
        "level": level,
        "salary_min": low,
        "salary_max": high,
        "skills": skills,
    }


def wait(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """The job once it ended, following its Server-Sent Events (the mounted job routes)."""
    last: dict[str, Any] = {}
    with client.stream("GET", f"/jobs/{job_id}/events", timeout=30) as events:
        for line in events.iter_lines():
            if line.startswith("data:"):
                last = json.loads(line.removeprefix("data:"))
    return last


def test_post_answers_at_once_and_the_job_queries_generates_and_saves(
    run_example: RunExample,
) -> None:
    app = run_example("roles_api", "--employees", "3000", "--generation", "0.2")
    role = {"department": "design", "title": "engineer", "level": 3}
    with httpx.Client(base_url=app.base, timeout=10) as client:
        assert client.post("/roles", json={**role, "department": "nope"}).status_code == 422
        assert client.post("/roles", json={**role, "level": 99}).status_code == 422

        first = client.post("/roles", json=role)
        assert first.status_code == 202, first.text
        job = first.json()
        assert (job["task"], job["status"]) == ("create_role", "queued")
        assert first.headers["location"] == f"/jobs/{job['id']}"
        assert client.get(f"/roles/{job['id']}").status_code in (404, 200)

        done = wait(client, job["id"])
        assert done["status"] == "succeeded", done
        second = wait(client, client.post("/roles", json=role).json()["id"])

        saved = client.get(f"/roles/{job['id']}").json()
    want = expected(str(app.data / "hr.db"), **role)  # type: ignore[arg-type]
    assert {key: saved[key] for key in want} == want
    assert saved["description"].startswith("Engineer (level 3) in design")
    result = done["result"]
    assert set(result["timings_ms"]) == {
        "headcount",
        "salary_band",
        "top_skills",
        "similar_roles",
        "all_queries",
    }
    assert result["similar_roles"] == []
    assert second["result"]["similar_roles"] == [job["id"]]  # it saw the first role, committed
