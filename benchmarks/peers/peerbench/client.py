"""The harness's end of a system's client process (``python -m systems._client CONFIG``)."""

from __future__ import annotations

import json
import select
import subprocess
from pathlib import Path
from typing import Any


class ClientError(RuntimeError):
    """The client process answered with an error, died, or did not answer in time."""


class ClientProc:
    """One client process in a system's environment; requests are answered one at a time."""

    def __init__(self, python: Path, config: str, cwd: Path, env: dict[str, str], log: Path):
        self.log = log
        with log.open("ab") as err:
            self.proc = subprocess.Popen(
                [str(python), "-m", "systems._client", config],
                cwd=cwd,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )

    def call(self, op: str, wait: float = 300.0, **fields: Any) -> Any:
        """Send one request and return its answer; ``wait``: seconds to wait for it."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        try:
            self.proc.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise ClientError(f"the client process died:\n{self.log_tail()}") from None
        ready, _, _ = select.select([self.proc.stdout], [], [], wait)
        if not ready:
            raise ClientError(f"no answer to {op!r} within {wait:.0f} s")
        line = self.proc.stdout.readline()
        if not line:
            raise ClientError(f"the client process died during {op!r}:\n{self.log_tail()}")
        answer = json.loads(line)
        if "error" in answer:
            raise ClientError(f"{op}: {answer['error']}\n{answer.get('trace', '')}")
        return answer["ok"]

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b'{"op": "quit"}\n')
                self.proc.stdin.close()
                self.proc.wait(30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
