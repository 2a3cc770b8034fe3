"""Logging: readable text or one JSON object per line, in any process that hosts offload.

::

    import offload.logs
    offload.logs.configure_logging()        # OFFLOAD_LOG_FORMAT (text|json), OFFLOAD_LOG_LEVEL

One call, in the module that builds your app (or at the top of a script), sets offload's
logger and re-formats the handlers that uvicorn and gunicorn gave their own loggers in this
process, so that everything they log from then on has one format. For the lines a server
writes before it imports your app (gunicorn's master, ``uvicorn --workers``'s parent), hand it
:func:`dict_config` (gunicorn's ``logconfig_dict``, uvicorn's ``log_config`` or, saved as a
JSON file, ``--log-config``).

JSON lines carry ``request_id`` when the record was logged while a request was being served
(:data:`REQUEST_ID`, set by the service's and the integrations' request handling, and read
from gunicorn's access-log atoms), and ``job_id``, ``task``, ``attempt`` (and the submitting
request's ``request_id``) for every line logged while a worker runs a job, its code's included.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import orjson

from offload.errors import ConfigurationError
from offload.settings import Settings

__all__ = [
    "LOG_FIELDS",
    "REQUEST_ID",
    "JSONFormatter",
    "TextFormatter",
    "configure_logging",
    "dict_config",
    "escape_controls",
    "request_id_from",
]

#: the id of the request being served in this context (None outside requests)
REQUEST_ID: ContextVar[str | None] = ContextVar("offload_request_id", default=None)
#: fields of every JSON line logged in this context (a worker sets a job's: job_id, task...)
LOG_FIELDS: ContextVar[Mapping[str, object]] = ContextVar(
    "offload_log_fields", default=MappingProxyType({})
)

#: the loggers of the servers that host offload; their handlers take offload's format
HOST_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error", "gunicorn.access")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
FORMATS = ("text", "json")

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_STANDARD |= {"color_message"}  # uvicorn's copy of the message with terminal colours
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_GUNICORN_ATOMS = ("{x-request-id}o", "{x-request-id}i")  # response header, then request's


def request_id_from(given: str | None) -> str:
    """The client's ``X-Request-ID`` if it is sane (letters, digits, ``._-``, at most 128),
    else a new random id."""
    return given if given and _SANE_REQUEST_ID.match(given) else uuid.uuid4().hex


class JSONFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...extra fields}`` per line, with
    ``request_id`` when one is known, and the job's fields in a job's code."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **LOG_FIELDS.get(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                data[key] = value
        if "request_id" not in data:
            request_id = _request_id_of(record)
            if request_id:
                data["request_id"] = request_id
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


def escape_controls(text: str) -> str:
    """``text`` with control characters (line breaks included) written as escapes."""
    return _CONTROL.sub(lambda m: _NAMED.get(m[0]) or f"\\x{ord(m[0]):02x}", text)


class TextFormatter(logging.Formatter):
    """One line per message: control characters in it (a ``%0d%0a`` from a request path, say)
    are escaped, so no input can forge a log line. Tracebacks keep their own lines."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


def _request_id_of(record: logging.LogRecord) -> str | None:
    """The request being served, or the one a gunicorn access line is about (its atoms hold
    the request's and the answer's headers; gunicorn logs them after the request ended)."""
    if isinstance(record.args, Mapping):
        for atom in _GUNICORN_ATOMS:
            value = record.args.get(atom)
            if isinstance(value, str) and value != "-":
                return value
    return REQUEST_ID.get()


def _formatter(fmt: str) -> logging.Formatter:
    if fmt not in FORMATS:
        raise ConfigurationError(f"log format must be 'text' or 'json' (got {fmt!r})")
    return JSONFormatter() if fmt == "json" else TextFormatter()


def _level(level: str) -> str:
    name = level.upper()
    if not isinstance(logging.getLevelName(name), int):
        raise ConfigurationError(
            f"log level must be DEBUG, INFO, WARNING, ERROR or CRITICAL (got {level!r})"
        )
    return name


def _resolve(fmt: str | None, level: str | None) -> tuple[str, str]:
    """The format and level given, else those of ``OFFLOAD_LOG_FORMAT``/``OFFLOAD_LOG_LEVEL``."""
    if fmt is None or level is None:
        settings = Settings.from_env()
        fmt = settings.log_format if fmt is None else fmt
        level = settings.log_level if level is None else level
    return fmt, _level(level)


def configure_logging(fmt: str | None = None, level: str | None = None) -> None:
    """Log offload's lines to stderr as ``fmt`` (``"text"`` or ``"json"``; default
    ``OFFLOAD_LOG_FORMAT``, else text) from ``level`` up (default ``OFFLOAD_LOG_LEVEL``,
    else INFO): a worker's start, its jobs, an embedded worker's too. With ``"json"``, the
    handlers of uvicorn's and gunicorn's loggers in this process (their access lines
    included) write JSON as well, each line with the ``request_id`` it belongs to.

    Call it once per process, after the server has set up its logging: at import of the
    module that builds your app is the right time under uvicorn and gunicorn.
    """
    fmt, level = _resolve(fmt, level)
    formatter = _formatter(fmt)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger("offload")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    if fmt == "json":
        for name in HOST_LOGGERS:
            for host_handler in logging.getLogger(name).handlers:
                host_handler.setFormatter(formatter)


def dict_config(fmt: str | None = None, level: str | None = None) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` dictionary: offload's, uvicorn's and gunicorn's
    loggers (and the root logger, from WARNING) to stderr as ``fmt``, offload's and the
    servers' from ``level``. Defaults as in :func:`configure_logging`.

    gunicorn: ``logconfig_dict = offload.logs.dict_config()`` in ``gunicorn.conf.py``;
    uvicorn: ``uvicorn.run(..., log_config=offload.logs.dict_config())``, or ``--log-config``
    with it saved as a JSON file.
    """
    fmt, level = _resolve(fmt, level)
    _formatter(fmt)  # checks the name
    formatter = {"()": f"offload.logs.{'JSONFormatter' if fmt == 'json' else 'TextFormatter'}"}

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"offload": formatter},
        "handlers": {
            "offload": {
                "class": "logging.StreamHandler",
                "formatter": "offload",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            **{
                name: {"handlers": ["offload"], "level": level, "propagate": False}
                for name in ("offload", *HOST_LOGGERS)
            },
            "uvicorn.error": {"level": level},  # through "uvicorn"'s handler
        },
        "root": {"handlers": ["offload"], "level": "WARNING"},
    }
