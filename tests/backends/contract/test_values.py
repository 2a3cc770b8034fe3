"""The backend contract: values.

Runs unchanged against every backend kind in ``tests/backends/conftest.py``; time only
moves through the manual clock. Shared helpers live in ``helpers.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from offload.backends.base import Backend

from .helpers import (
    MakeJob,
    claim_one,
    stored,
    submit_one,
)

#: JSON that tends to break naive storage: unicode, nesting, awkward floats, big ints.
PAYLOAD: dict[str, Any] = {
    "text": 'héllo wörld ✓ 日本語 😀 "quoted" \\ back\nslash',
    "nested": {"list": [1, 2.5, None, True, False, "x"], "deep": {"a": {"b": {"c": []}}}},
    "floats": [0.1, 1 / 3, 1e-300, 1.7976931348623157e308, -2.5, 0.0],
    "ints": [0, -1, 2**53, -(2**53)],
    "empty": {"list": [], "dict": {}, "str": ""},
}


async def test_json_values_round_trip(backend: Backend, make: MakeJob) -> None:
    new = make(args=[PAYLOAD, "ü"], kwargs={"payload": PAYLOAD}, meta={"m": PAYLOAD})
    await submit_one(backend, new)
    first, lease = await claim_one(backend)
    assert (first.args, first.kwargs, first.meta) == (
        [PAYLOAD, "ü"],
        {"payload": PAYLOAD},
        {"m": PAYLOAD},
    )
    await backend.progress(lease, 1 / 3, PAYLOAD["text"])
    assert (await stored(backend, new.id)).progress_message == PAYLOAD["text"]
    await backend.complete(lease, PAYLOAD)
    done = await stored(backend, new.id)
    assert done.result == PAYLOAD
    assert done.progress == pytest.approx(1 / 3)

    await submit_one(backend, make())
    second, lease = await claim_one(backend)
    await backend.fail(lease, {"type": "E", "message": PAYLOAD["text"], "details": PAYLOAD})
    failed = await stored(backend, second.id)
    assert failed.error == {"type": "E", "message": PAYLOAD["text"], "details": PAYLOAD}


@pytest.mark.parametrize("result", [None, 0, "", [], {}, 1.5, "text", [1, [2, [3]]]])
async def test_simple_results_round_trip(backend: Backend, make: MakeJob, result: Any) -> None:
    await submit_one(backend, make())
    record, lease = await claim_one(backend)
    await backend.complete(lease, result)
    assert (await stored(backend, record.id)).result == result


async def test_stored_values_do_not_alias_the_callers_objects(
    backend: Backend, make: MakeJob
) -> None:
    args: list[Any] = [{"n": 1}]
    await submit_one(backend, make(args=args))
    args[0]["n"] = 2
    record, lease = await claim_one(backend)
    assert record.args == [{"n": 1}]
    result = {"items": [1]}
    await backend.complete(lease, result)
    result["items"].append(2)
    assert (await stored(backend, record.id)).result == {"items": [1]}
