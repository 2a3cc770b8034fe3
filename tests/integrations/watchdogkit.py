"""Helpers of the watchdog tests: a handler that keeps log records, the monitor threads."""

from __future__ import annotations

import logging
import threading


class Records(logging.Handler):
    """Every record of the ``offload.watchdog`` logger, from whichever thread logged it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def monitor_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "offload-watchdog"]


def innermost(record: logging.LogRecord) -> str:
    """The innermost frame of a block's record, as ``"file:line in function"``."""
    stack: list[str] = vars(record).get("stack") or [""]
    return stack[-1]
