"""Non-finite and out-of-range numbers are refused at the Python edge, naming the field."""

from __future__ import annotations

import math

import pytest

import offload
from offload.client import SubmitOptions
from offload.core.bounds import MAX_DELAY, PRIORITY_MAX, PRIORITY_MIN, check_priority
from offload.core.limits import parse_rate
from offload.core.task import TaskSpec
from offload.errors import ConfigurationError
from offload.settings import Settings

BAD = [math.nan, math.inf, -math.inf]
#: A whole number too large for a float: ``float()`` of it raises OverflowError, not ValueError.
HUGE = 10**400


def work() -> None:
    return None


@pytest.mark.parametrize(
    "delay",
    [*BAD, -1.0, 1e308, pytest.param(HUGE, id="10**400"), pytest.param(True, id="True")],
)
def test_retry_refuses_a_delay_that_is_not_a_finite_positive_number(delay: float) -> None:
    with pytest.raises(ValueError, match="Retry delay"):
        offload.Retry(delay=delay)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"delay": math.nan}, "delay"),
        ({"delay": math.inf}, "delay"),
        ({"run_at": math.nan}, "run_at"),
        ({"run_at": -math.inf}, "run_at"),
        ({"priority": 2**53}, "priority"),
        ({"priority": PRIORITY_MIN - 1}, "priority"),
        ({"priority": 1.5}, "priority"),
        ({"delay": HUGE}, "delay"),
        ({"delay": MAX_DELAY + 1}, "delay"),  # the HTTP API's bound, in Python too
        ({"run_at": HUGE}, "run_at"),
    ],
)
def test_submit_options_refuse_non_finite_and_out_of_range_numbers(
    options: dict[str, float], says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        SubmitOptions(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"timeout": math.nan}, "timeout"),
        ({"timeout": math.inf}, "timeout"),
        ({"result_ttl": math.nan}, "result_ttl"),
        ({"priority": PRIORITY_MAX + 1}, "priority"),
        ({"timeout": HUGE}, "timeout"),
        ({"result_ttl": HUGE}, "result_ttl"),
    ],
)
def test_task_specs_refuse_non_finite_and_out_of_range_numbers(
    fields: dict[str, float], says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        TaskSpec(work, "work", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["1/" + "9" * 400 + "s", "1/0s", "0/s"])
def test_rates_must_be_finite_and_positive(text: str) -> None:
    with pytest.raises(ValueError, match="rate_limit"):
        parse_rate(text)


def test_the_priority_range_is_32_bit_like_the_http_api() -> None:
    assert check_priority(PRIORITY_MAX) == 2**31 - 1
    assert check_priority(PRIORITY_MIN) == -(2**31)
    with pytest.raises(ValueError, match="32-bit"):
        check_priority(2**31)


def test_settings_refuse_non_finite_seconds() -> None:
    with pytest.raises(ConfigurationError, match="result_ttl"):
        Settings(result_ttl=math.nan)


@pytest.mark.parametrize("name", ["a\0b", "a\x01", "tab\tname"])
def test_task_names_hold_no_control_characters(name: str) -> None:
    with pytest.raises(ValueError, match="control"):
        TaskSpec(work, name)


@pytest.mark.parametrize(
    "options",
    [
        {"retry_backoff": math.nan},
        {"retry_backoff": math.inf},
        {"retry_backoff_max": math.inf},
        {"retry_backoff_max": 1e308},  # past the ten-year bound of every delay
        {"retry_backoff": HUGE},
        {"retries": True},
        {"retries": 2.5},
    ],
    ids=lambda options: str(options)[:40],
)
def test_retry_policies_refuse_non_finite_and_out_of_range_numbers(
    options: dict[str, object],
) -> None:
    # A NaN backoff was accepted and every retry of the task then failed to be recorded.
    app = offload.App("memory://")
    with pytest.raises(ValueError, match="retr"):
        app.task(**options)(work)  # type: ignore[call-overload]


@pytest.mark.parametrize("key", ["", 42])
def test_an_idempotency_key_is_a_non_empty_string(key: object) -> None:
    # "" (say, from a missing header) was taken: every such submit got the first one's job.
    with pytest.raises(ValueError, match="idempotency_key"):
        SubmitOptions(idempotency_key=key)  # type: ignore[arg-type]
