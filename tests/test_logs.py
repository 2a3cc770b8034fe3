"""Log lines: text lines cannot be forged through what they quote."""

from __future__ import annotations

import logging

from offload.logs import TextFormatter, escape_controls


def test_text_log_lines_escape_control_characters() -> None:
    path = "/v1/jobs/x\r\n2026-12-07 03:00:00,000 CRITICAL offload: forged\x00\x1b[31m"
    record = logging.LogRecord(
        "offload.service", logging.DEBUG, __file__, 1, "%s %s -> %d", ("GET", path, 404), None
    )
    line = TextFormatter().format(record)
    assert not any(c in line for c in "\n\r\x00\x1b")
    assert line.endswith(
        "GET /v1/jobs/x\\r\\n2026-12-07 03:00:00,000 CRITICAL offload: forged\\x00\\x1b[31m -> 404"
    )
    assert escape_controls("tab\there \u2028") == "tab\\there \\x2028"
