"""Small pieces every backend shares: transition checks, URL parsing, cursors."""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from offload.core.states import State, can_transition
from offload.errors import ConfigurationError, InvalidTransition


def check_transition(job_id: str, current: State | None, target: State) -> None:
    """Raise InvalidTransition unless the one transition table allows the move."""
    if not can_transition(current, target):
        raise InvalidTransition(job_id, current.value if current else "new", target.value)


def encode_cursor(created_at: float, job_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at!r}|{job_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
        at, job_id = raw.split("|", 1)
        if not math.isfinite(float(at)):  # nan or inf: no page starts there
            raise ValueError(at)
        return float(at), job_id
    except (ValueError, UnicodeDecodeError):
        raise ConfigurationError(
            f"invalid cursor {cursor!r}: pass the next_cursor of a previous page"
        ) from None


@dataclass(frozen=True, slots=True)
class ParsedURL:
    scheme: str
    netloc: str
    path: str
    options: dict[str, str]


def parse_url(url: str) -> ParsedURL:
    parts = urlsplit(url)
    if not parts.scheme:
        raise ConfigurationError(
            f"backend URL {url!r} has no scheme; use sqlite:///path.db, redis://host:6379/0 "
            "or memory://"
        )
    return ParsedURL(parts.scheme, parts.netloc, parts.path, dict(parse_qsl(parts.query)))
