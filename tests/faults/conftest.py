"""Fixtures of the fault tests: workers as real processes, a history check after every test.

``faults`` is parametrized over the backend kinds (``faultkit.KINDS``), so every test that uses
it runs once on a fresh SQLite file, once in a fresh namespace on the shared test Redis and
once in a fresh schema on the test PostgreSQL.
``outage`` is a :class:`Faults` on a private ``redis-server`` (``redis_server``) that a test may
kill, pause or cut off; ``pg_outage`` is one in a schema on a private PostgreSQL cluster
(``postgres_server``) that a test may crash and start again.

After a test passed, every process it started is killed and the history checker
(``Faults.check_history``, module :mod:`history`) runs on what is left: a broken rule fails the
test in its teardown. With ``OFFLOAD_FAULT_RESULTS=path`` set, each test's measured summary is
appended to that file as one JSON line (the table in docs/reliability.md comes from it).

Chaos is seeded: ``chaos`` is a ``random.Random`` seeded from ``OFFLOAD_FAULT_SEED`` (or a fresh
seed), mixed with the test's id. The seed is printed, and shown when a test fails; set
``OFFLOAD_FAULT_SEED`` to it to replay the same victims and timings.

When a test fails, each process's log is attached to the failure report.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faultkit import HERE, KINDS, Faults

from pgkit import PostgresServer, postgres_schema_url
from rediskit import RedisServer

SEED = int(os.environ.get("OFFLOAD_FAULT_SEED") or random.SystemRandom().randrange(2**32))
_CALL_PASSED = pytest.StashKey[bool]()


@pytest.fixture
def chaos(request: pytest.FixtureRequest) -> random.Random:
    """Randomness for victims and timings, replayable with ``OFFLOAD_FAULT_SEED``."""
    print(f"chaos seed {SEED} (replay: OFFLOAD_FAULT_SEED={SEED})")
    request.node.user_properties.append(("chaos seed", SEED))
    return random.Random(f"{SEED}/{request.node.nodeid}")


@pytest.fixture(params=KINDS)
def faults(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Faults]:
    monkeypatch.syspath_prepend(str(HERE))
    yield from _checked(request, Faults(tmp_path, request.param))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private ``redis-server`` (AOF, ``appendfsync always``) that a test may kill."""
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.kill()  # only the redis-server this fixture started


@pytest.fixture
def outage(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Faults]:
    """Faults on the private server (whose log is shown when a test fails)."""
    monkeypatch.syspath_prepend(str(HERE))
    f = Faults(tmp_path, "redis", url=f"{redis_server.url}?prefix=outage")
    f.extra_logs.append(redis_server.workdir / "redis.log")
    yield from _checked(request, f)


@pytest.fixture
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster (initdb in the test's folder) that a test may crash."""
    # Not under tmp_path: pytest's folder is private to root, and the cluster runs as postgres.
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="offload-pg.")))
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()  # only the cluster this fixture started
        shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture
def pg_outage(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Faults]:
    """Faults in a fresh schema on the private cluster (whose log is shown when a test fails)."""
    monkeypatch.syspath_prepend(str(HERE))
    f = Faults(tmp_path, "postgres", url=postgres_schema_url(postgres_server.url))
    f.extra_logs.append(postgres_server.log)
    yield from _checked(request, f)


def _checked(request: pytest.FixtureRequest, f: Faults) -> Iterator[Faults]:
    """Yield ``f``; once the test passed, stop its processes and check the histories."""
    started = time.monotonic()
    try:
        yield f
        if request.node.stash.get(_CALL_PASSED, False):
            f.kill_all()
            summary = f.check_history()
            _publish(request, f, summary.as_dict(), time.monotonic() - started)
    finally:
        f.cleanup()


def _publish(
    request: pytest.FixtureRequest, f: Faults, summary: dict[str, Any], took: float
) -> None:
    line = {
        "test": request.node.nodeid,
        "backend": f.kind,
        "seconds": round(took, 1),
        **summary,
        **f.measured,
    }
    print(f"history check passed: {json.dumps(line)}")
    results = os.environ.get("OFFLOAD_FAULT_RESULTS")
    if results:
        with open(results, "a") as out:
            out.write(json.dumps(line) + "\n")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_CALL_PASSED] = report.passed
    if report.failed:
        for f in getattr(item, "funcargs", {}).values():
            if isinstance(f, Faults):
                report.sections.append((f"worker logs ({report.when})", f.logs()))
        if "chaos" in getattr(item, "funcargs", {}):
            report.sections.append(("chaos", f"seed {SEED}: replay with OFFLOAD_FAULT_SEED={SEED}"))
    return report
