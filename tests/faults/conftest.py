"""The ``faults`` fixture: workers as real processes, killed at teardown whatever happened.

When a test fails, each worker's log (its stderr) is attached to the failure report.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faultkit import HERE, Faults


@pytest.fixture
def faults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Faults]:
    monkeypatch.syspath_prepend(str(HERE))
    f = Faults(tmp_path)
    try:
        yield f
    finally:
        f.cleanup()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    f = getattr(item, "funcargs", {}).get("faults")
    if report.failed and isinstance(f, Faults):
        report.sections.append((f"worker logs ({report.when})", f.logs()))
    return report
