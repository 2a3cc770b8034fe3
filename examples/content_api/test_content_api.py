"""The content API from its README: real web app, worker, upstream servers and SMTP sink."""

from __future__ import annotations

import json
import time
from email import message_from_bytes, policy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from upstream import png
from writing import IMAGES, image_url

if TYPE_CHECKING:
    from conftest import RunExample  # the fixture's type (pytest passes the fixture)

pytestmark = pytest.mark.slow  # real servers and workers, seconds each


def follow(client: httpx.Client, path: str) -> list[tuple[str, dict[str, Any]]]:
    """Every Server-Sent Event of a job's stream, until it ends."""
    events: list[tuple[str, dict[str, Any]]] = []
    with client.stream("GET", path, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line.removeprefix("data:"))))
    return events


def test_post_answers_at_once_and_the_workflow_writes_and_emails(run_example: RunExample) -> None:
    app = run_example("content_api", "--llm-delay", "0.05")
    with httpx.Client(base_url=app.base, timeout=10) as client:
        creator = client.post(
            "/creators", json={"name": "Ada", "email": "ada@example.com", "niche": "tea"}
        )
        assert creator.status_code == 201
        creator_id = creator.json()["id"]
        assert client.post("/creators/999/content", json={"topic": "x"}).status_code == 404

        accepted = client.post(f"/creators/{creator_id}/content", json={"topic": "oolong"})
        assert accepted.status_code == 202, accepted.text
        job = accepted.json()
        assert job["status"] == "queued"
        assert accepted.headers["location"] == f"/content/{job['id']}"

        events = follow(client, f"/jobs/{job['id']}/events")
        names = [name for name, _ in events]
        assert (names[0], names[-1]) == ("snapshot", "status")
        assert events[-1][1]["status"] == "succeeded"
        fractions = [data["progress"] for name, data in events if name == "progress"]
        assert len(fractions) >= 2
        assert fractions == sorted(fractions)
        assert fractions[-1] == 1.0
        assert events[-1][1]["progress_message"] == "written"  # updates are coalesced: not all

        deadline = time.monotonic() + 30
        while (content := client.get(f"/content/{job['id']}").json())["status"] != "succeeded":
            assert content["status"] in ("pending", "running"), content
            assert time.monotonic() < deadline, content
            time.sleep(0.1)

    post, email = (step["result"] for step in content["steps"])
    assert post["email"] == "ada@example.com"
    assert len(post["sections"]) == 3
    for number, path in enumerate(post["images"]):  # downloaded over HTTP, byte for byte
        assert Path(path).read_bytes() == png(image_url("oolong", number).split("/")[-1])
    assert len(post["images"]) == IMAGES

    [sent] = (app.data / "outbox").glob("*.eml")  # delivered over SMTP to the local sink
    message = message_from_bytes(sent.read_bytes(), policy=policy.default)
    assert message["To"] == "ada@example.com"
    assert message["Subject"].strip() == f"Your post is ready: {post['title']}"
    assert message["Message-ID"] == email["message_id"] == f"<{job['id']}@content-api.example>"
