"""Task specs: what a registered function is and how its jobs run. Pure data plus validation."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, get_type_hints

from pydantic import PydanticSchemaGenerationError, PydanticUserError, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from offload.core import validate
from offload.core.bounds import check_priority, check_seconds
from offload.core.codec import to_json_value
from offload.core.job import DEFAULT_QUEUE
from offload.core.limits import Limits
from offload.core.retention import Retention
from offload.core.retry import RetryPolicy
from offload.errors import InvalidArguments, SerializationError

ExecutorKind = Literal["async", "thread", "process"]
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
EXECUTOR_KINDS: tuple[ExecutorKind, ...] = ("async", "thread", "process")


def infer_executor(func: Callable[..., Any]) -> ExecutorKind:
    """``async def`` runs on the event loop; everything else in the thread pool."""
    return "async" if inspect.iscoroutinefunction(func) else "thread"


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: the function, its name and how its jobs run."""

    func: Callable[..., Any]
    name: str
    queue: str = DEFAULT_QUEUE
    executor: ExecutorKind = "thread"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float | None = None
    priority: int = 0
    result_ttl: float | None = None
    limits: Limits | None = None  # global caps and rate limits (None: unlimited)
    retention: Retention | None = None  # how long its ended jobs are kept (None: the App's)

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() or not c.isprintable() for c in self.name):
            # Backends join a task name and a concurrency key with NUL into one slot name.
            raise ValueError(
                f"task name {self.name!r} must be non-empty with no whitespace or control "
                "characters"
            )
        if self.executor not in EXECUTOR_KINDS:
            raise ValueError(f"executor must be one of {EXECUTOR_KINDS}, not {self.executor!r}")
        validate.queue_name(self.queue)
        if self.executor == "async" and not inspect.iscoroutinefunction(self.func):
            raise ValueError(f"task {self.name!r}: executor='async' needs an async def function")
        if self.executor != "async" and inspect.iscoroutinefunction(self.func):
            raise ValueError(f"task {self.name!r}: an async def task runs with executor='async'")
        if self.timeout is not None:
            check_seconds(self.timeout, f"task {self.name!r}: timeout", positive=True)
        if self.result_ttl is not None:
            check_seconds(self.result_ttl, f"task {self.name!r}: result_ttl")
        check_priority(self.priority, f"task {self.name!r}: priority")

    @cached_property
    def signature(self) -> inspect.Signature:
        return inspect.signature(self.func)

    @cached_property
    def _adapters(self) -> dict[str, TypeAdapter[Any]]:
        hints = get_type_hints(self.func)
        adapters: dict[str, TypeAdapter[Any]] = {}
        for name, param in self.signature.parameters.items():
            hint = hints.get(name, Any)
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                hint = list[hint]  # type: ignore[valid-type]
            elif param.kind is inspect.Parameter.VAR_KEYWORD:
                hint = dict[str, hint]  # type: ignore[valid-type]
            adapters[name] = TypeAdapter(hint)
        return adapters

    def check_annotations(self) -> None:
        """Fail at declaration when pydantic cannot validate a parameter's annotation (a name
        not defined yet is left for later: the module may define it further down)."""
        try:
            self._adapters  # noqa: B018 - built (and cached) for the check
        except NameError:
            return
        except (PydanticUserError, PydanticSchemaGenerationError) as exc:
            first = str(exc).splitlines()[0]
            raise ValueError(
                f"task {self.name!r}: its parameter annotations cannot be validated: {first}"
            ) from None

    @cached_property
    def _required(self) -> bool:
        return any(
            p.default is inspect.Parameter.empty
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
            for p in self.signature.parameters.values()
        )

    def bind(
        self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]
    ) -> inspect.BoundArguments:
        try:
            return self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(
                self.name, str(exc), argument=self._culprit(len(args), kwargs)
            ) from None

    def _culprit(self, positional: int, kwargs: dict[str, Any]) -> str | None:
        """The first missing or unexpected argument's name, when there is one to name."""
        params = self.signature.parameters
        named = [p for p in params.values() if p.kind not in _VARIADIC]
        given = {p.name for p in named[:positional]} | set(kwargs)
        missing = [p.name for p in named if p.default is p.empty and p.name not in given]
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        unexpected = [] if takes_any else [k for k in kwargs if k not in params]
        return (missing + unexpected + [None])[0]

    def encode_arguments(
        self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """Check arguments against the signature and annotations; return them as JSON data.

        The caller's split between positional and keyword arguments is kept as given.
        """
        if not args and not kwargs and not self._required:
            return [], {}  # what binding nothing gives, without binding (bulk submits)
        bound = self.bind(args, kwargs)
        encoded = {
            name: self.encode_argument(name, value) for name, value in bound.arguments.items()
        }
        return self._split(encoded, len(args), kwargs)

    def encode_argument(self, name: str, value: Any) -> Any:
        """One bound argument checked against its annotation, as JSON data (else
        InvalidArguments naming it): the one encoder of every submit path."""
        adapter = self._adapters[name]
        try:
            validate.check_json(value, f"argument {name!r}")
            validated = adapter.validate_python(value)
            return to_json_value(adapter.dump_python(validated, mode="json"))
        except ValidationError as exc:
            raise InvalidArguments(self.name, _describe(name, exc), argument=name) from None
        except (SerializationError, PydanticSerializationError) as exc:
            raise InvalidArguments(
                self.name, f"argument {name!r} is not a JSON value: {exc}", argument=name
            ) from None
        except ValueError as exc:  # from check_json (the others are ValueErrors too)
            raise InvalidArguments(self.name, str(exc), argument=name) from None

    def _split(
        self, encoded: dict[str, Any], positional: int, kwargs: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        out_args: list[Any] = []
        out_kwargs: dict[str, Any] = {}
        for param in self.signature.parameters.values():
            if param.name not in encoded:
                continue
            value = encoded[param.name]
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                out_args.extend(value)
            elif param.kind is inspect.Parameter.VAR_KEYWORD:
                out_kwargs.update(value)
            elif len(out_args) < positional and param.name not in kwargs:
                out_args.append(value)
            else:
                out_kwargs[param.name] = value
        return out_args, out_kwargs

    @cached_property
    def _plain(self) -> tuple[str, ...] | None:
        """The parameter names when none is variadic or keyword-only, else None."""
        params = self.signature.parameters.values()
        if any(p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params):
            return None
        return tuple(p.name for p in params)

    def decode_arguments(
        self, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Turn stored JSON arguments back into the annotated types (datetimes, models...)."""
        if not args and not kwargs and not self._required:
            return (), {}
        plain = self._plain
        if not kwargs and plain is not None and len(args) == len(plain):
            # Every parameter given by position (the usual job): nothing to bind.
            return tuple(self._decode(n, v) for n, v in zip(plain, args, strict=True)), {}
        bound = self.bind(args, kwargs)
        for name, value in bound.arguments.items():
            bound.arguments[name] = self._decode(name, value)
        return bound.args, bound.kwargs

    def _decode(self, name: str, value: Any) -> Any:
        try:
            return self._adapters[name].validate_python(value)
        except ValidationError as exc:
            raise InvalidArguments(self.name, _describe(name, exc), argument=name) from None

    def arguments_schema(self) -> dict[str, Any]:
        """A JSON schema object describing the task's parameters (for APIs and docs)."""
        props: dict[str, Any] = {}
        required: list[str] = []
        for name, param in self.signature.parameters.items():
            props[name] = self._adapters[name].json_schema()
            if param.default is inspect.Parameter.empty and param.kind not in (
                inspect.Parameter.VAR_POSITIONAL,
                inspect.Parameter.VAR_KEYWORD,
            ):
                required.append(name)
        return {"type": "object", "properties": props, "required": required}


def _describe(name: str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    location = f"{name}.{where}" if where else name
    return f"argument {location!r}: {first['msg']} (got {first.get('input')!r})"
