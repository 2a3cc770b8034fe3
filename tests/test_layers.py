"""The layers of DESIGN.md section 3 hold at run time: core -> backends/client -> worker ->
service -> cli, each loading only layers to its left, and the service never the worker (API and
workers meet in the backend).

The direct-import test reads the service's source; the run-time tests import every module of a
layer in a fresh interpreter and look at what ``sys.modules`` holds afterwards, which also
catches a higher layer arriving through a package ``__init__`` or a lower module's import.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import offload
import offload.service

SERVICE = Path(offload.service.__file__).parent
ROOT = Path(offload.__file__).parent

# Module name prefixes of each layer, left to right. Modules outside these (integrations,
# doctor) sit beside the stack and are not checked here.
LAYERS: dict[str, tuple[str, ...]] = {
    "core": (
        "offload.core",
        "offload.errors",
        "offload.settings",
        "offload.logs",
        "offload._version",
        "offload.tracing",
        "offload.job_metrics",
        "offload.otel_metrics",
    ),
    "backends/client": (
        "offload.backends",
        "offload.client",
        "offload.jobs",
        "offload.tasks",
        "offload.submission",
        "offload.transactional",
        "offload.workflows",
        "offload.loader",
        "offload._portal",
        "offload.http_client",
        "offload.api",
    ),
    "worker": ("offload.worker",),
    "service": ("offload.service",),
    "cli": (
        "offload.cli",
        "offload.cli_args",
        "offload.cli_top",
        "offload.cli_progress",
        "offload.cli_migrate",
        "offload.up",
        "offload.console",
        "offload.loadtest",
        "offload.demo",
    ),
}
ORDER = list(LAYERS)

# Imports every module of one layer in turn and reports the first higher-layer module to appear.
PROBE = """
import importlib, json, sys
modules, forbidden = json.loads(sys.argv[1]), tuple(json.loads(sys.argv[2]))
def offenders():
    return sorted(m for m in sys.modules if m in forbidden or m.startswith(
        tuple(f + "." for f in forbidden)))
for module in modules:
    importlib.import_module(module)
    if bad := offenders():
        print(json.dumps([module, bad]))
        break
else:
    print(json.dumps(None))
"""


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_service_modules_do_not_import_the_worker() -> None:
    modules = sorted(SERVICE.glob("*.py"))
    assert len(modules) > 5
    for path in modules:
        bad = {
            m
            for m in imported_modules(path)
            if m == "offload.cli" or m.startswith("offload.worker")
        }
        assert not bad, f"{path.name} imports {bad}"


def module_names(path: Path) -> list[str]:
    """The modules of a package directory or a module file, by name, found without importing
    anything (``__main__`` modules skipped)."""
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
    names = []
    for file in files:
        parts = file.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts[-1] != "__main__":
            names.append(".".join(parts))
    return names


def modules_of(layer: str) -> list[str]:
    """Every module under the layer's prefixes."""
    return [
        m for prefix in LAYERS[layer] for m in module_names(ROOT.joinpath(*prefix.split(".")[1:]))
    ]


def above(layer: str) -> list[str]:
    """The module prefixes of the layers to the right of ``layer``."""
    return [p for name in ORDER[ORDER.index(layer) + 1 :] for p in LAYERS[name]]


@pytest.mark.parametrize("layer", ORDER[:-1])
def test_a_layer_loads_no_higher_layer_at_run_time(layer: str) -> None:
    modules = modules_of(layer)
    forbidden = above(layer)
    if layer == "service":
        forbidden += LAYERS["worker"]
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(modules), json.dumps(forbidden)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    offender = json.loads(out.stdout)
    assert offender is None, f"importing {offender[0]} loads {offender[1]}"


def test_every_module_belongs_to_a_layer_or_sits_beside_the_stack() -> None:
    beside = ("offload.integrations", "offload.doctor")
    layered = {m for name in ORDER for m in modules_of(name)}
    for name in module_names(ROOT):
        if name.startswith(beside) or name == "offload":
            continue
        assert name in layered, f"{name} is in no layer of tests/test_layers.py"
