"""Parsing the Redis backend's URLs: what redis-py connects to, and offload's own options."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from offload.errors import ConfigurationError

DEFAULT_PREFIX = "offload"


@dataclass(frozen=True, slots=True)
class RedisURL:
    """A parsed ``redis://`` URL: what redis-py connects to, and offload's own options."""

    connect_url: str  # without offload's options (and safe to hand to redis-py)
    shown: str  # host:port/db, without credentials, for messages
    prefix: str
    strict: bool
    has_password: bool


def parse_redis_url(url: str) -> RedisURL:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigurationError(f"{url!r} is not a Redis URL; use redis://host:6379/0")
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError(
            f"Redis URL {_hide_password(url)!r} has an invalid port; use redis://host:6379/0"
        ) from None
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise ConfigurationError(
            f"Redis URL {_hide_password(url)!r}: the path must be a database number, like /0"
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    prefix = options.pop("prefix", DEFAULT_PREFIX)
    if not prefix or any(c in prefix for c in "{}"):
        raise ConfigurationError(
            f"Redis URL option prefix={prefix!r} must be non-empty and without braces"
        )
    strict = options.pop("strict", "false").lower() in ("1", "true", "yes", "on")
    query = urlencode(options)  # urlunsplit would write unix:///p as unix:/p, refused by redis-py
    connect = f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")
    host = parts.hostname or "localhost"
    shown = parts.path if parts.scheme == "unix" else f"{host}:{port or 6379}/{db or 0}"
    return RedisURL(connect, shown, prefix, strict, parts.password is not None)


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
