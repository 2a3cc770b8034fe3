"""Find the user's ``App`` from a ``module:attribute`` path, like uvicorn does."""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING

from offload.errors import ConfigurationError

if TYPE_CHECKING:
    from offload.client import App


def load_app(path: str) -> App:
    """Import ``module:attribute`` (attribute may be dotted) and return the App it names."""
    from offload.client import App

    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"app path {path!r} must look like 'package.module:app'")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigurationError(
                f"cannot import module {module_name!r} for app {path!r}: run from the folder "
                "that contains it or install it"
            ) from None
        raise
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, App):
        raise ConfigurationError(
            f"{path!r} is a {type(obj).__name__}, not an offload.App; point at the App instance"
        )
    return obj
