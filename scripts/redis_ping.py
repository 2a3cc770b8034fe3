"""Exit 0 when a Redis answers PING at the given URL (``--wait S``: keep trying S seconds)."""

from __future__ import annotations

import argparse
import sys
import time

import redis


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--wait", type=float, default=0.0)
    ns = parser.parse_args()
    deadline = time.monotonic() + ns.wait
    while True:
        try:
            with redis.Redis.from_url(ns.url, socket_connect_timeout=1) as client:
                if client.ping():
                    return 0
        except redis.exceptions.RedisError:
            pass
        if time.monotonic() >= deadline:
            print(f"no Redis answers at {ns.url}", file=sys.stderr)
            return 1
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
