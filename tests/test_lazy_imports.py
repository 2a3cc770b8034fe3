"""Importing a part of offload loads that part, not the whole package (PEP 562 lazy names)."""

from __future__ import annotations

import subprocess
import sys


def loaded_after(statement: str) -> set[str]:
    """The modules in ``sys.modules`` after running ``statement`` in a fresh interpreter."""
    script = f"{statement}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=30
    )
    return set(out.stdout.split())


def test_importing_the_service_leaves_the_worker_out() -> None:
    loaded = loaded_after("import offload.service")
    assert "offload.service.app" in loaded
    assert not {m for m in loaded if m == "offload.worker" or m.startswith("offload.worker.")}


def test_importing_offload_loads_neither_the_worker_nor_httpx() -> None:
    loaded = loaded_after("import offload")
    assert "offload.worker" not in loaded
    assert "httpx" not in loaded
    assert "offload.http_client" not in loaded


def test_lazy_names_resolve_on_first_use() -> None:
    loaded = loaded_after("import offload; offload.Worker; offload.run_process; offload.HTTPClient")
    assert {"offload.worker.worker", "offload.worker.subprocess", "httpx"} <= loaded


def test_dir_lists_every_exported_name() -> None:
    import offload

    assert set(offload.__all__) <= set(dir(offload))


def test_the_flask_extension_loads_no_fastapi() -> None:
    loaded = loaded_after("import offload.integrations.flask")
    heavy = {"fastapi", "starlette", "prometheus_client", "offload.service", "offload.worker"}
    assert not {m for m in loaded if m.partition(".")[0] in heavy or m in heavy}
    assert not {m for m in loaded if m.startswith(("offload.service.", "offload.worker."))}
