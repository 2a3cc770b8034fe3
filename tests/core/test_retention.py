"""Retention settings: defaults, the environment, per-task retention, checks."""

from __future__ import annotations

import math

import pytest

import offload
from offload.core.retention import DAY, WEEK, Retention, RetentionPolicy
from offload.core.states import State
from offload.errors import ConfigurationError
from offload.settings import Settings


def test_the_defaults_plateau_and_result_ttl_is_unset() -> None:
    policy = Settings().retention()
    assert policy.default == Retention(DAY, WEEK, WEEK)
    assert policy.max_finished == 100_000
    assert Settings().result_ttl is None


def test_settings_from_the_environment() -> None:
    env = {
        "OFFLOAD_RETAIN_SUCCEEDED": "60",
        "OFFLOAD_MAX_FINISHED": "0",
        "OFFLOAD_RESULT_TTL": "3600",
    }
    settings = Settings.from_env(env)
    assert settings.result_ttl == 3600.0
    policy = settings.retention()
    assert policy.age("any", State.SUCCEEDED) == 60
    assert policy.max_finished is None  # 0: no cap


BAD = [
    {"retain_failed": -1.0},
    {"max_finished": -1},
    {"result_ttl": -1.0},
    {"retain_succeeded": math.inf},
]


@pytest.mark.parametrize("bad", BAD)
def test_bad_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        Settings(**bad)  # type: ignore[arg-type]


def test_bad_retentions_are_refused() -> None:
    with pytest.raises(ValueError, match="succeeded"):
        Retention(succeeded=-1)
    with pytest.raises(ValueError, match="failed"):
        Retention(failed=math.nan)
    with pytest.raises(ValueError, match="max_finished"):
        RetentionPolicy(max_finished=-5)
    with pytest.raises(ValueError, match="outcome"):
        Retention().age(State.RUNNING)


def test_a_tasks_retention_joins_the_apps_policy() -> None:
    app = offload.App("memory://", settings=Settings(retain_succeeded=10))

    @app.task(name="audited", retention=Retention(succeeded=None, failed=5))
    def audited() -> None: ...

    @app.task(name="plain")
    def plain() -> None: ...

    policy = app.retention()
    assert policy.age("audited", State.SUCCEEDED) is None
    assert policy.age("audited", State.FAILED) == 5
    assert policy.age("plain", State.SUCCEEDED) == 10
    assert policy.shortest(State.SUCCEEDED) == 10
    assert policy.as_json()["tasks"]["audited"]["succeeded"] == -1
