"""The virtual environments the systems run in (standard library only: run.py imports this
before it has re-started itself in the peers environment).

- ``offload``: offload's own ``.venv`` at the repository root (offload installed editable);
- ``peers``: ``benchmarks/peers/.venv-peers``, every peer from ``requirements.txt`` (also runs
  the harness itself: redis-py, matplotlib);
- ``arq``: ``benchmarks/peers/.venv-peers-arq`` from ``requirements-arq.txt``: arq's newest
  release requires redis-py < 6, which would hold Celery and taskiq-redis back to older
  releases if they shared one environment.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent  # benchmarks/peers
REPO = HERE.parent.parent
VENVS = {
    "offload": REPO / ".venv",
    "peers": HERE / ".venv-peers",
    "arq": HERE / ".venv-peers-arq",
}
REQUIREMENTS = {"peers": HERE / "requirements.txt", "arq": HERE / "requirements-arq.txt"}
STAMP = ".requirements-sha256"  # in the venv: which requirements file it was made from


def python(venv: str) -> Path:
    return VENVS[venv] / "bin" / "python"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ensure(venv: str, base_python: str = sys.executable) -> None:
    """Make ``venv`` if it is missing or was made from other pinned versions."""
    if venv == "offload":
        if not python(venv).exists():
            raise SystemExit(
                f"offload's environment {VENVS[venv]} is missing: run scripts/test (or "
                "`python -m venv .venv && .venv/bin/pip install -e '.[dev,redis]'`) first"
            )
        return
    path, requirements = VENVS[venv], REQUIREMENTS[venv]
    stamp = path / STAMP
    wanted = _digest(requirements)
    if python(venv).exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return
    print(f"making {path} from {requirements.name} ...", file=sys.stderr, flush=True)
    if not python(venv).exists():
        subprocess.run([base_python, "-m", "venv", str(path)], check=True)
    pip = [str(python(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(requirements)], check=True)
    stamp.write_text(wanted + "\n")


def base_python() -> str:
    """The interpreter to make environments with: the one running, unless it is a venv's."""
    return str(Path(sys.base_prefix) / "bin" / "python3")
