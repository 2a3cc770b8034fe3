"""The PostgreSQL backend's URL: libpq's part and the backend's own options.

Options (the rest of the query string goes to libpq, e.g. ``sslmode``): ``schema`` (default
``offload``), ``notify`` (``false`` for PgBouncer transaction pooling: poll every
``poll_interval`` seconds instead), ``prepare`` (``false``: no server-side prepared statements,
for poolers that cannot keep them), ``pool_size`` (default 10 connections), ``group_limit``
(most jobs one group-commit transaction writes, default 500; 1 turns group commit off),
``group_flushes`` (most group-commit transactions of one kind in flight at once, default 2).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from offload.backends._common import parse_url
from offload.backends.postgres import schema
from offload.errors import ConfigurationError

OPTIONS = (
    "schema",
    "notify",
    "prepare",
    "pool_size",
    "poll_interval",
    "group_limit",
    "group_flushes",
)
#: Most jobs one group-commit transaction writes (see :mod:`.group`).
GROUP_LIMIT = 500
#: Most group-commit transactions of one kind (submits; moves to a final state) in flight.
GROUP_FLUSHES = 2


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """The libpq connection URL (our options removed) and our options."""
    parsed = parse_url(url)
    parts = urlsplit(url)
    ours = {k: v for k, v in parsed.options.items() if k in OPTIONS}
    rest = {k: v for k, v in parsed.options.items() if k not in OPTIONS}
    scheme = "postgresql" if parts.scheme in ("postgres", "postgresql") else parts.scheme
    conninfo = urlunsplit((scheme, parts.netloc, parts.path, urlencode(rest), ""))
    return conninfo, ours


def backend_options(url: str, options: dict[str, str]) -> dict[str, Any]:
    """The backend's keyword arguments from its URL options (ConfigurationError if bad)."""
    try:
        return {
            "schema_name": options.get("schema", schema.DEFAULT_SCHEMA),
            "notify": _flag(options.get("notify", "true"), "notify"),
            "prepare": _flag(options.get("prepare", "true"), "prepare"),
            "pool_size": int(options.get("pool_size", 10)),
            "poll_interval": float(options.get("poll_interval", 0.5)),
            "group_limit": int(options.get("group_limit", GROUP_LIMIT)),
            "group_flushes": int(options.get("group_flushes", GROUP_FLUSHES)),
        }
    except ValueError as exc:
        raise ConfigurationError(f"invalid PostgreSQL URL option in {url!r}: {exc}") from None


def _flag(value: str, name: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"PostgreSQL URL option {name}={value!r} must be true or false")
