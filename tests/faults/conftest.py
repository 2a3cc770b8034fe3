"""The ``faults`` fixture: workers as real processes, killed at teardown whatever happened.

It is parametrized over the backend kinds (``faultkit.KINDS``), so every test that uses it runs
once on a fresh SQLite file and once in a fresh namespace on the shared test Redis.

When a test fails, each worker's log (its stderr) is attached to the failure report (for any
fixture that is a ``Faults``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faultkit import HERE, KINDS, Faults


@pytest.fixture(params=KINDS)
def faults(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Faults]:
    monkeypatch.syspath_prepend(str(HERE))
    f = Faults(tmp_path, request.param)
    try:
        yield f
    finally:
        f.cleanup()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        for f in getattr(item, "funcargs", {}).values():
            if isinstance(f, Faults):
                report.sections.append((f"worker logs ({report.when})", f.logs()))
    return report
