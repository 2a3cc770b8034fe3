"""Exit 0 when a PostgreSQL server answers at the given URL (``--wait S``: keep trying S
seconds)."""

from __future__ import annotations

import argparse
import sys
import time

import psycopg


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--wait", type=float, default=0.0)
    ns = parser.parse_args()
    deadline = time.monotonic() + ns.wait
    while True:
        try:
            with psycopg.connect(ns.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
                return 0
        except psycopg.Error as exc:
            error = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        if time.monotonic() >= deadline:
            print(f"no PostgreSQL answers at {ns.url} ({error})", file=sys.stderr)
            return 1
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
