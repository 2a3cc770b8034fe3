"""The pure model: transition table, retry policy, codec, ids, clock."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from offload.core.clock import ManualClock
from offload.core.codec import dumps, loads, to_json_value
from offload.core.ids import new_job_id, new_worker_id
from offload.core.retry import RetryPolicy
from offload.core.states import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    State,
    can_transition,
)
from offload.errors import SerializationError


def test_every_state_has_a_row_and_terminal_states_absorb() -> None:
    assert set(TRANSITIONS) == {None, *State}
    for state in TERMINAL_STATES:
        assert TRANSITIONS[state] == frozenset()
    assert TERMINAL_STATES.isdisjoint(ACTIVE_STATES)
    assert set(State) == TERMINAL_STATES | ACTIVE_STATES


def test_the_contract_transitions() -> None:
    assert can_transition(None, State.QUEUED)
    assert can_transition(None, State.SCHEDULED)
    assert not can_transition(None, State.RUNNING)
    assert can_transition(State.RUNNING, State.QUEUED)  # retry, lease expiry, release
    assert can_transition(State.SCHEDULED, State.CANCELLED)
    assert not can_transition(State.SCHEDULED, State.RUNNING)
    assert not can_transition(State.SUCCEEDED, State.QUEUED)


def test_retry_delays_grow_exponentially_within_jitter_and_cap() -> None:
    policy = RetryPolicy(retries=5, base_delay=1.0, factor=2.0, max_delay=10.0, jitter=0.5)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (60, 10.0)]:
        for _ in range(50):
            delay = policy.delay(attempt, rng)
            assert ceiling * 0.5 <= delay <= ceiling


def test_retry_budget() -> None:
    policy = RetryPolicy(retries=2)
    assert policy.allows_retry(1)
    assert policy.allows_retry(2)
    assert not policy.allows_retry(3)
    assert not RetryPolicy().allows_retry(1)


@pytest.mark.parametrize(
    "kwargs",
    [{"retries": -1}, {"base_delay": -1.0}, {"factor": 0.5}, {"jitter": 2.0}],
)
def test_retry_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_codec_round_trip_and_plain_data_only() -> None:
    value = {"a": [1, 2.5, "é", None, True], "b": {"c": "x"}}
    assert loads(dumps(value)) == value

    @dataclass
    class Point:
        x: int

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert to_json_value({"p": Point(1), "t": when}) == {"p": {"x": 1}, "t": "2026-01-02T03:04:05Z"}
    with pytest.raises(SerializationError, match="not JSON"):
        to_json_value(object())
    with pytest.raises(SerializationError):
        dumps({1, 2})


def test_ids_are_unique_and_time_ordered() -> None:
    ids = [new_job_id(now=1000.0 + i) for i in range(100)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 100
    assert all(len(i) == 32 for i in ids)
    assert new_worker_id("w") != new_worker_id("w")


def test_manual_clock_moves_only_forward() -> None:
    clock = ManualClock(100.0)
    clock.advance(2.5)
    assert clock.now() == 102.5
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
