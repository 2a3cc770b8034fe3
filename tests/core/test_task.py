"""Task specs: argument validation and encoding against the function's signature."""

from __future__ import annotations

import sys
import typing
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

import offload
from offload.core.registry import TaskRegistry
from offload.core.task import TaskSpec, infer_executor
from offload.errors import InvalidArguments, TaskNotFound


class Address(BaseModel):
    street: str
    number: int


def ship(to: Address, when: datetime, *, express: bool = False) -> str:
    return f"{to.street} {when.isoformat()} {express}"


async def agen(x: int) -> int:
    return x


def test_arguments_are_validated_encoded_and_decoded_back() -> None:
    spec = TaskSpec(func=ship, name="ship")
    when = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    args, kwargs = spec.encode_arguments(
        (Address(street="Main", number=3), when), {"express": True}
    )
    assert args == [{"street": "Main", "number": 3}, "2026-05-01T12:00:00Z"]
    assert kwargs == {"express": True}
    call_args, call_kwargs = spec.decode_arguments(args, kwargs)
    assert call_args == (Address(street="Main", number=3), when)
    assert ship(*call_args, **call_kwargs) == "Main 2026-05-01T12:00:00+00:00 True"


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((), {}, "missing a required argument: 'to'"),
        (({"street": "x", "number": "nope"}, "2026-01-01T00:00:00"), {}, "argument 'to.number'"),
        (
            ({"street": "x", "number": 1}, "2026-01-01T00:00:00"),
            {"colour": 1},
            "unexpected keyword",
        ),
        (({"street": "x", "number": 1}, "not a date"), {}, "argument 'when'"),
    ],
)
def test_bad_arguments_name_the_problem(
    args: tuple[object, ...], kwargs: dict[str, object], match: str
) -> None:
    spec = TaskSpec(func=ship, name="ship")
    with pytest.raises(InvalidArguments, match=match):
        spec.encode_arguments(args, kwargs)


def route(origin: Address, hops: int, note: str = "") -> str:
    return f"{origin.street} {hops} {note}"


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        ([{"street": "a", "number": 1}, 2, "x"], {}, ((Address(street="a", number=1), 2, "x"), {})),
        ([{"street": "a", "number": 1}, "2"], {}, ((Address(street="a", number=1), 2), {})),
        (
            [{"street": "a", "number": 1}],
            {"hops": 3},
            ((Address(street="a", number=1), 3), {}),
        ),
    ],
)
def test_decoding_positional_and_mixed_arguments_gives_the_same_call(
    args: list[object], kwargs: dict[str, object], expected: object
) -> None:
    assert TaskSpec(func=route, name="route").decode_arguments(args, kwargs) == expected


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ([{"street": "a", "number": 1}, "many", ""], "argument 'hops'"),
        ([{"street": "a"}, 1, ""], "argument 'origin.number'"),
        ([{"street": "a", "number": 1}, 1, "", "extra"], "too many positional arguments"),
    ],
)
def test_decoding_bad_stored_arguments_names_the_problem(args: list[object], match: str) -> None:
    with pytest.raises(InvalidArguments, match=match):
        TaskSpec(func=route, name="route").decode_arguments(args, {})


def test_values_json_cannot_hold_are_refused() -> None:
    def takes_anything(value: object) -> None: ...

    spec = TaskSpec(func=takes_anything, name="t")
    with pytest.raises(InvalidArguments, match="value"):
        spec.encode_arguments((object(),), {})
    assert spec.encode_arguments(({"k": [1, 2]},), {}) == ([{"k": [1, 2]}], {})


def test_schema_lists_parameters_and_required_ones() -> None:
    schema = TaskSpec(func=ship, name="ship").arguments_schema()
    assert set(schema["properties"]) == {"to", "when", "express"}
    assert schema["required"] == ["to", "when"]


def test_executor_inference_and_checks() -> None:
    assert infer_executor(agen) == "async"
    assert infer_executor(ship) == "thread"
    with pytest.raises(ValueError, match="async def"):
        TaskSpec(func=ship, name="x", executor="async")
    with pytest.raises(ValueError, match="executor='async'"):
        TaskSpec(func=agen, name="x", executor="process")
    with pytest.raises(ValueError, match="whitespace"):
        TaskSpec(func=ship, name="a b")
    with pytest.raises(ValueError, match="timeout"):
        TaskSpec(func=ship, name="x", timeout=0)


def test_registry_resolves_only_registered_names() -> None:
    registry = TaskRegistry()
    registry.add(TaskSpec(func=ship, name="ship"))
    assert registry.get("ship").func is ship
    assert "ship" in registry
    with pytest.raises(TaskNotFound, match="known tasks: ship"):
        registry.get("os.system")
    with pytest.raises(ValueError, match="already registered"):
        registry.add(TaskSpec(func=agen, name="ship", executor="async"))


def test_signature_errors_name_the_argument() -> None:
    spec = TaskSpec(func=ship, name="ship")
    with pytest.raises(InvalidArguments) as missing:
        spec.encode_arguments((), {"when": "2026-01-01T00:00:00"})
    assert missing.value.argument == "to"
    with pytest.raises(InvalidArguments) as unexpected:
        spec.encode_arguments(({"street": "x", "number": 1}, "2026-01-01T00:00:00"), {"colour": 1})
    assert unexpected.value.argument == "colour"


class Point(typing.TypedDict):  # typing's, not typing_extensions': pydantic refuses it (3.11)
    x: int


def plot(p: Point) -> None:
    return None


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="pydantic takes typing.TypedDict there")
def test_an_annotation_pydantic_cannot_validate_fails_at_declaration() -> None:
    app = offload.App("memory://")
    with pytest.raises(ValueError, match=r"task 'plot'.*typing_extensions\.TypedDict"):
        app.task(name="plot")(plot)


def _nothing() -> None: ...


def _defaults(a: int = 1, *rest: int, b: str = "x", **more: int) -> None: ...


@pytest.mark.parametrize("func", [_nothing, _defaults])
def test_a_call_with_no_arguments_encodes_as_binding_nothing(func: typing.Any) -> None:
    # The short cut for a call with no arguments (bulk submits of such tasks) gives what
    # binding gives, a fresh list and dict each time; required parameters still raise.
    spec = TaskSpec(func=func, name="t")
    first = spec.encode_arguments((), {})
    assert first == ([], {}) == spec._split({}, 0, {})
    assert spec.encode_arguments((), {}) is not first
    assert spec.encode_arguments((), {})[0] is not first[0]
    with pytest.raises(InvalidArguments, match="missing a required argument: 'origin'"):
        TaskSpec(func=route, name="route").encode_arguments((), {})
