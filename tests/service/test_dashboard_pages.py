"""The dashboard's overview pages: static and CSP-strict, and each one live in Chromium.

Set ``OFFLOAD_DASHBOARD_SHOTS=docs/img`` to write the screenshots the docs show
(``dashboard-<page>.png``); otherwise they go to the test's temporary folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest
from servicekit import ACME_READ, Service
from test_dashboard import CHROMIUM, CHROMIUM_ARGS, XSS, assert_hardened

import dash_app
import offload
from offload.client import SubmitOptions, Task
from offload.service.dashboard import PAGES
from offload.service.overview import expected_ticks
from upkit import RunningUp, free_port

TESTS = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("page", PAGES)
async def test_each_page_is_static_html_with_the_csp(anon: Service, page: str) -> None:
    response = await anon.client.get(f"/dashboard/{page}.html")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert_hardened(response)
    assert '<script src="/dashboard/pages.js" defer></script>' in response.text
    assert "<script>" not in response.text
    assert f'data-page="{page}"' in response.text


async def test_pages_script_is_served_and_never_parses_markup(anon: Service) -> None:
    response = await anon.client.get("/dashboard/pages.js")
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert_hardened(response)
    source = resources.files("offload.service.dashboard").joinpath("pages.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in source
    index = (await anon.client.get("/")).text
    for page in PAGES:
        assert f'href="/dashboard/{page}.html"' in index


async def test_pages_need_no_token_but_their_views_do(svc: Service) -> None:
    assert (await svc.client.get("/dashboard/limits.html")).status_code == 200
    assert (await svc.client.get("/v1/overview/limits")).status_code == 401
    assert (await svc.client.get("/v1/overview/limits", headers=ACME_READ)).status_code == 200


# ---- a real browser over `offload up dash_app:app` ------------------------------------------


@contextmanager
def _up(tmp_path: Path, **env: str) -> Iterator[tuple[RunningUp, str]]:
    """``offload up dash_app:app`` on a fresh SQLite file; yields it and the backend URL."""
    port = free_port()
    backend = f"sqlite:///{tmp_path}/offload.db"
    env = {
        **os.environ,
        "OFFLOAD_BACKEND": backend,
        "PYTHONPATH": str(TESTS),
        "OFFLOAD_LEASE_SECONDS": "6",
        **env,
    }
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "offload",
                "up",
                "dash_app:app",
                "--port",
                str(port),
                "--concurrency",
                "8",
            ],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = RunningUp(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 30
        while not _ready(running.base):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield running, backend
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def dash_up(tmp_path: Path, browser_available: None) -> Iterator[tuple[RunningUp, str]]:
    with _up(tmp_path) as running:
        yield running


@pytest.fixture
def browser_available() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no {CHROMIUM}: install it with `apt-get install -y chromium`")
    pytest.importorskip("playwright")


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _post(base: str, task: str, *args: Any, key: str | None = None) -> None:
    body: dict[str, Any] = {"task": task, "args": list(args)}
    if key is not None:
        body["concurrency_key"] = key
    response = httpx.post(f"{base}/v1/jobs", json=body, timeout=5)
    assert response.status_code == 202, response.text


def _seed(base: str, backend: str) -> Callable[[], str]:
    """Jobs for every page: finished and failed ones, capped ones waiting, workflows."""
    for wave in range(3):  # a few seconds apart: bars side by side on the 5-minute chart
        for i in range(8):
            _post(base, "fetch_page", f"https://example.com/{wave}/{i}")
        _post(base, "fetch_page", f"https://example.com/broken/{wave}")
        time.sleep(2.5)
    for key in ("customer-1", "customer-1", "customer-2", XSS, "customer-3"):
        _post(base, "call_llm", "hello", key=key)
    with dash_app.build(backend) as app:
        # sync_invoices last ran 25 minutes ago (before a deploy with missed="skip", say)
        schedule = app.schedules["sync_invoices"]
        tick = expected_ticks(schedule, time.time())[5]
        options = SubmitOptions(meta=schedule.tick_meta(tick), idempotency_key=f"tick-{tick}")
        app.run_sync(app.asubmit_name("sync_invoices", [], {}, options))
        resize, wait, fetch = (
            Task(app, app.registry.get(n)) for n in ("resize_image", "wait_forever", "publish")
        )
        app.submit_workflow(
            resize.s(1, 2) | offload.group(resize.s(10), resize.s(20)) | resize.s(3)
        )
        app.submit_workflow(resize.s(5) | offload.group(wait.s(1), resize.s(2)) | resize.s(7))
        app.submit_workflow(resize.s(4) | fetch.s() | resize.s(1))

    def missed_now() -> str:
        """sync_invoices' missed ticks as the page may show them now: 5 at seeding, one more
        for each 5-minute boundary passed since (at most one while the page loads)."""
        n = sum(1 for t in expected_ticks(schedule, time.time()) if t > tick)
        return f"^({n}|{n + 1})$"

    return missed_now


def _wait_for(base: str, view: str, ready: Callable[[Any], bool]) -> None:
    deadline = time.monotonic() + 30
    while not ready(data := httpx.get(f"{base}/v1/overview/{view}", timeout=5).json()):
        assert time.monotonic() < deadline, f"{view} never got ready: {data}"
        time.sleep(0.2)


@pytest.mark.slow
def test_each_page_shows_its_view_live_in_chromium(
    dash_up: tuple[RunningUp, str], tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    up, backend = dash_up
    base = up.base
    missed_pattern = _seed(base, backend)
    _wait_for(base, "schedules", lambda v: v["schedules"][0]["last_tick"] is not None)
    _wait_for(
        base,
        "workflows",
        lambda v: {w["status"] for w in v["workflows"]} == {"succeeded", "running", "failed"},
    )
    _wait_for(base, "limits", lambda v: v["limits"][0]["running"] == 3)
    shots = Path(os.environ.get("OFFLOAD_DASHBOARD_SHOTS") or tmp_path)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)

            def visit(name: str, query: str = "") -> None:
                page.goto(f"{base}/dashboard/{name}.html{query}")
                expect(page.locator("body")).to_have_attribute("data-mode", "live")

            missed = re.compile(missed_pattern())
            visit("schedules")
            rows = page.locator("#schedules tbody tr")
            expect(rows).to_have_count(3)
            expect(rows.first).to_contain_text("every 5s")
            expect(rows.first).to_contain_text("succeeded")
            expect(rows.nth(1)).to_contain_text("never")
            expect(rows.nth(2)).to_contain_text("every 5m")
            expect(rows.nth(2).locator("td.error")).to_have_text(missed)  # since its run
            page.screenshot(path=shots / "dashboard-schedules.png", full_page=True)

            visit("limits")
            table = page.locator("#limits tbody")
            expect(table.locator("tr").first).to_contain_text("3 / 3")
            expect(table).to_contain_text("/ 30/min")
            expect(table).to_contain_text(f"key {XSS}")
            page.screenshot(path=shots / "dashboard-limits.png", full_page=True)

            visit("workflows")
            cards = page.locator("#workflows article")
            expect(cards).to_have_count(3)
            expect(page.locator(".step.succeeded")).to_have_count(7)
            expect(page.locator(".step.running")).to_have_count(1)
            expect(page.locator(".step.failed")).to_have_count(1)
            expect(page.locator(".group")).to_have_count(2)
            page.screenshot(path=shots / "dashboard-workflows.png", full_page=True)

            visit("workers")
            worker = page.locator("#workers tbody tr").first
            expect(worker).to_contain_text("up")
            expect(worker).to_contain_text("call_llm")
            expect(worker).to_contain_text("ago")
            page.screenshot(path=shots / "dashboard-workers.png", full_page=True)

            visit("queues")
            expect(page.locator("#charts article")).to_have_count(3)
            chart = page.locator('#charts article[data-queue="default"] svg')
            expect(chart).to_have_attribute("data-window", "3600")
            visit("queues", "?window=300&bucket=5")
            expect(chart).to_have_attribute("data-window", "300")
            expect(chart).to_have_attribute("data-buckets", "60")
            # 24 fetched, 3 broken, 1 failed workflow step, and the periodic task's ticks
            assert int(chart.get_attribute("data-total") or 0) >= 28
            assert page.locator('#charts article[data-queue="default"] rect.bad').count() >= 1
            page.screenshot(path=shots / "dashboard-queues.png", full_page=True)

            # the same page by polling (what a browser without a usable stream gets)
            page.goto(f"{base}/dashboard/workers.html?mode=poll")
            expect(page.locator("body")).to_have_attribute("data-mode", "polling")
            expect(page.locator("#workers tbody")).to_contain_text("call_llm")

            assert page.evaluate("typeof window.__pwned") == "undefined"
            assert problems == []
        finally:
            browser.close()


@pytest.mark.slow
def test_with_tokens_a_page_asks_for_one_then_streams_through_fetch(
    browser_available: None, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with (
        _up(tmp_path, OFFLOAD_TOKENS="dash-secret=default:read") as (up, _),
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{up.base}/dashboard/workers.html")
            expect(page.locator("#token-form")).to_be_visible()
            page.fill("#token", "dash-secret")
            page.click("#token-form button[type=submit]")
            expect(page.locator("body")).to_have_attribute("data-mode", "live")
            expect(page.locator("#workers tbody")).to_contain_text("up")
            assert errors == []
        finally:
            browser.close()
