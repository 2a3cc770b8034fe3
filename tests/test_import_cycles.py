"""The modules of src/offload import one another without a cycle.

The graph is read from the source with ``ast``, and every import statement is an edge: at
module level (also inside ``try``/``if``), inside functions (a deferred import still loads the
module), and under ``if TYPE_CHECKING:`` too (a back-reference for annotations is still a loop
in the design; what a module needs of its caller is declared there as a Protocol instead).
``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``.
The parent packages Python runs first (``offload`` for ``offload.client``) are not edges: a
package's ``__init__`` re-exporting its modules is not a cycle of the code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import offload

ROOT = Path(offload.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


class _Imports(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.found: set[str] = set()

    def visit_Import(self, node: ast.Import) -> None:
        self.found.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            anchor = self.package.split(".")
            anchor = anchor[: len(anchor) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            module = f"{base}.{alias.name}"
            self.found.add(module if module in MODULES else base)


def import_graph() -> dict[str, set[str]]:
    """Each offload module and the offload modules it imports."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        visitor = _Imports(name, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(), str(path)))
        edges: set[str] = set()
        for target in visitor.found:
            if target in MODULES:
                edges.add(target)
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]], *, skip: set[str]) -> list[str] | None:
    """One cycle among the modules not in ``skip`` (as a path that ends where it starts)."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done or node in skip:
            return None
        path.append(node)
        for nxt in sorted(graph[node]):
            if cycle := visit(nxt):
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        if cycle := visit(start):
            return cycle
    return None


def test_the_graph_is_read() -> None:
    graph = import_graph()
    assert "offload.workflows.submit" in graph["offload.client"]  # a module-level import
    assert "offload.backends.sqlite" in graph["offload.backends"]  # one inside a function
    assert "offload.backends.base" in graph["offload.jobs"]  # one under TYPE_CHECKING


def test_the_cycle_finder_finds_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph, skip=set()) == ["a", "b", "c", "a"]
    assert find_cycle(graph, skip={"c"}) is None


def test_src_has_no_import_cycle() -> None:
    assert find_cycle(import_graph(), skip=set()) is None


def test_workflows_never_import_the_client() -> None:
    graph = import_graph()
    workflows = [name for name in graph if name.startswith("offload.workflows")]
    assert len(workflows) > 5
    assert all("offload.client" not in graph[name] for name in workflows)
