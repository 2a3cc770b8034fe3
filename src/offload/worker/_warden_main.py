"""The warden process: SIGKILLs a worker's command groups once the worker is gone.

Run as a plain script (``python -I -S _warden_main.py``), so it starts in milliseconds and
imports nothing of offload. Its stdin is a pipe whose only write end is in the worker; the
worker writes ``+<pgid>`` when a ``run_process`` command starts and ``-<pgid>`` once it is
reaped. End of input means the worker exited, however it exited (``kill -9`` included): every
group still listed is killed, grandchildren and all, and the warden exits.
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the worker, which tells us
    groups: set[int] = set()
    for line in sys.stdin.buffer:
        try:
            pgid = int(line[1:])
        except ValueError:
            continue
        if line.startswith(b"+"):
            groups.add(pgid)
        else:
            groups.discard(pgid)
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # the group is already empty


if __name__ == "__main__":
    main()
