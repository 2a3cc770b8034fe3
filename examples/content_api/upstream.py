"""Stand-ins for the content API's upstream services: an LLM provider and an image CDN.

- ``GET /health``
- ``POST /v1/complete`` with ``{"prompt": "..."}``: ``{"text": "..."}`` after ``--llm-delay``
  seconds, as a hosted model would answer;
- ``GET /images/<name>.png``: a small PNG after ``--image-delay`` seconds.

Answers are deterministic (the same prompt or name gives the same bytes), so a test can check
what arrived. One thread per connection, as in ``http.server``: plenty for a local demo.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import struct
import sys
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORDS = (
    "tea",
    "craft",
    "morning",
    "light",
    "slow",
    "ritual",
    "leaf",
    "kettle",
    "steam",
    "porcelain",
    "garden",
    "rain",
    "harvest",
    "valley",
    "hands",
    "patience",
    "aroma",
    "quiet",
    "ceremony",
    "spring",
    "mountain",
    "story",
    "season",
    "warmth",
)


def complete(prompt: str) -> str:
    """A deterministic 'completion': two sentences of words picked by the prompt's hash."""
    digest = hashlib.sha256(prompt.encode()).digest()
    words = [WORDS[b % len(WORDS)] for b in digest[:16]]
    return f"{' '.join(words[:8]).capitalize()}. {' '.join(words[8:]).capitalize()}."


def png(name: str, size: int = 32) -> bytes:
    """A ``size`` x ``size`` PNG of one colour taken from the name's hash."""
    red, green, blue = hashlib.sha256(name.encode()).digest()[:3]
    row = b"\x00" + bytes((red, green, blue)) * size  # filter byte, then RGB pixels
    raw = zlib.compress(row * size)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


class Handler(BaseHTTPRequestHandler):
    server: UpstreamServer

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, "application/json", b'{"status": "ok"}')
        elif self.path.startswith("/images/") and self.path.endswith(".png"):
            time.sleep(self.server.image_delay)
            self._send(200, "image/png", png(self.path.removeprefix("/images/")))
        else:
            self._send(404, "application/json", b'{"error": "not found"}')

    def do_POST(self) -> None:
        if self.path != "/v1/complete":
            self._send(404, "application/json", b'{"error": "not found"}')
            return
        length = int(self.headers.get("Content-Length", "0"))
        prompt = str(json.loads(self.rfile.read(length) or b"{}").get("prompt", ""))
        time.sleep(self.server.llm_delay)
        self._send(200, "application/json", json.dumps({"text": complete(prompt)}).encode())

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: one line per request would drown the demo's output


class UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, port: int, llm_delay: float, image_delay: float) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.llm_delay = llm_delay
        self.image_delay = image_delay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--llm-delay", type=float, default=0.2, help="seconds per completion")
    parser.add_argument("--image-delay", type=float, default=0.1, help="seconds per image")
    ns = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with UpstreamServer(ns.port, ns.llm_delay, ns.image_delay) as server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
