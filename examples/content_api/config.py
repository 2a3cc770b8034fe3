"""Where the content API keeps its data and finds its upstream services.

Read once from the environment (``run.py`` sets these for the web app and the workers alike).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Config:
    db: Path  # creators and posts (SQLite; the jobs live in $OFFLOAD_BACKEND)
    media: Path  # downloaded images, one folder per post
    upstream: str  # base URL of the LLM and image stand-ins (upstream.py)
    smtp_host: str
    smtp_port: int
    sender: str = "Content Studio <studio@example.com>"

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ
        data = Path(env.get("CONTENT_DATA", "data"))
        return cls(
            db=data / "content.db",
            media=data / "media",
            upstream=env.get("CONTENT_UPSTREAM", "http://127.0.0.1:8101"),
            smtp_host="127.0.0.1",
            smtp_port=int(env.get("CONTENT_SMTP_PORT", "8025")),
        )
