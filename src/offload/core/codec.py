"""The JSON codec: every job argument, result and error crosses boundaries as JSON (orjson)."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic_core import PydanticSerializationError, to_jsonable_python

from offload.core.validate import check_json
from offload.errors import SerializationError

JSONValue = Any  # what orjson.loads can return: None, bool, int, float, str, list, dict


def dumps(value: Any) -> bytes:
    """Encode a JSON value; raises SerializationError naming the offending type."""
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        raise SerializationError(f"value is not JSON-serializable: {exc}") from None


def loads(data: bytes | str) -> JSONValue:
    """Decode JSON text into plain data (never into classes)."""
    return orjson.loads(data)


def to_json_value(value: Any) -> JSONValue:
    """Turn a Python value into plain JSON data.

    Dataclasses, pydantic models, datetimes, UUIDs and enums become their JSON forms; anything
    else that JSON cannot hold raises SerializationError.
    """
    try:
        plain = to_jsonable_python(value, inf_nan_mode="constants")  # checked below
    except PydanticSerializationError as exc:
        raise SerializationError(
            f"value of type {type(value).__name__} is not JSON: {exc}"
        ) from None
    try:
        check_json(plain, f"value of type {type(value).__name__}")
        orjson.dumps(plain)
    except ValueError as exc:
        raise SerializationError(str(exc)) from None
    except TypeError as exc:
        raise SerializationError(
            f"value of type {type(value).__name__} is not JSON: {exc}"
        ) from None
    return plain
