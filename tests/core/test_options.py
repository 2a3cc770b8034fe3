"""TaskOptions: the one declaration of a task's options, and the keyword types that mirror it."""

from __future__ import annotations

import dataclasses

import pytest

from offload.core.options import PeriodicKeywords, TaskKeywords, TaskOptions


def _fields() -> set[str]:
    return {f.name for f in dataclasses.fields(TaskOptions)}


def test_the_keyword_types_name_every_option() -> None:
    assert set(TaskKeywords.__optional_keys__) == _fields()
    per_key = {"key_concurrency", "key_rate_limit"}
    assert set(PeriodicKeywords.__optional_keys__) == _fields() - per_key


def test_replace_checks_again() -> None:
    options = TaskOptions(queue="emails", concurrency=2)
    assert options.replace(name="send").name == "send"
    assert options.replace(name="send").queue == "emails"
    with pytest.raises(ValueError, match="concurrency must be a whole number"):
        options.replace(concurrency=0)


def test_unknown_keywords_are_named() -> None:
    with pytest.raises(TypeError, match=r"App.periodic\(\) got an unexpected keyword argument"):
        TaskOptions.of("App.periodic", {"key_concurrency": 1}, PeriodicKeywords)
    assert TaskOptions.of("App.task", {"key_concurrency": 1}, TaskKeywords).key_concurrency == 1


def ship(order: int) -> None: ...


def test_spec_applies_the_defaults() -> None:
    spec = TaskOptions(retries=2).spec(ship)
    assert (spec.name, spec.queue, spec.executor) == ("ship", "default", "thread")
    assert spec.limits is None
    assert spec.retry.retries == 2
    assert TaskOptions(rate_limit="60/m").spec(ship).limits is not None
