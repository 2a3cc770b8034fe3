"""Which known client a name or expression holds, within one function (flow-insensitive).

``client = OpenAI()`` at module level, ``with sqlite3.connect(p) as conn`` in a function,
``db: Session = Depends(get_db)`` as a parameter: each binds a name to a kind from
:mod:`offload.doctor.catalog`. Any other assignment to the name hides the binding, so a
parameter or local that merely shares the name is never mistaken for the client.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from offload.doctor.catalog import CONSTRUCTORS, KINDS, PATH_TYPES
from offload.doctor.names import Names

AnyFunction = ast.FunctionDef | ast.AsyncFunctionDef
_PATH_FUNCTIONS = frozenset(
    {
        "os.path.join",
        "os.path.dirname",
        "importlib.resources.files",
        "importlib_resources.files",
    }
)
_PATH_METHODS = frozenset({"resolve", "absolute", "joinpath", "with_name", "with_suffix"})
_NESTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def scope_nodes(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """Every node of ``body`` that runs in this scope: nested functions, lambdas and classes
    are left out (their code runs when they are called, maybe in a thread)."""
    todo: list[ast.AST] = [n for n in body if not isinstance(n, _NESTED)]
    while todo:
        node = todo.pop()
        yield node
        todo.extend(c for c in ast.iter_child_nodes(node) if not isinstance(c, _NESTED))


class Bindings:
    """Names of one scope (a module, or a function over its module) and the kind each holds."""

    def __init__(
        self,
        names: Names,
        outer: Bindings | None = None,
        local_classes: dict[str, str] | None = None,
    ) -> None:
        self.names = names
        self._outer = outer
        self._kinds: dict[str, str | None] = {}
        self._static: set[str] = set()  # names holding a path built from constants only
        self._classes = local_classes if local_classes is not None else {}

    @classmethod
    def for_module(cls, tree: ast.Module, names: Names) -> Bindings:
        classes = {
            stmt.name: "thread"
            for stmt in tree.body
            if isinstance(stmt, ast.ClassDef)
            and any(names.qualify(b) == "threading.Thread" for b in stmt.bases)
        }
        scope = cls(names, local_classes=classes)
        scope.bind_body(tree.body)
        return scope

    def for_function(self, func: AnyFunction) -> Bindings:
        scope = Bindings(self.names, outer=self, local_classes=self._classes)
        args = func.args
        for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if arg is not None:
                scope._kinds[arg.arg] = scope._annotation_kind(arg.annotation)
        scope.bind_body(func.body)
        return scope

    def bind_body(self, body: list[ast.stmt]) -> None:
        nodes = [n for n in scope_nodes(body) if isinstance(n, _BINDERS)]
        nodes.sort(key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0)))
        for node in nodes:
            self._bind(node)

    def kind(self, name: str) -> str | None:
        if name in self._kinds:
            return self._kinds[name]
        if self._outer is None:
            return None
        found = self._outer.kind(name)
        return None if found is None or KINDS[found].local_only else found

    def value_kind(self, expr: ast.expr) -> str | None:
        """The kind of the object ``expr`` evaluates to, when it is a known client."""
        if isinstance(expr, ast.Name):
            return self.kind(expr.id)
        if isinstance(expr, ast.Attribute):
            owner = self.value_kind(expr.value)
            return owner if owner is not None and KINDS[owner].chain else None
        if not isinstance(expr, ast.Call):
            return None
        made = self.constructor(expr)
        if made is not None:
            return made[0]
        func = expr.func
        if isinstance(func, ast.Attribute):
            owner = self.value_kind(func.value)
            return KINDS[owner].products.get(func.attr) if owner else None
        if isinstance(func, ast.Name):
            owner = self.kind(func.id)
            return KINDS[owner].products.get("__call__") if owner else None
        return None

    def constructor(self, call: ast.Call) -> tuple[str, bool] | None:
        """``(kind, blocks)`` when ``call`` makes a known client, else None."""
        qual = self.names.qualify(call.func)
        if qual is None:
            if isinstance(call.func, ast.Name) and call.func.id in self._classes:
                return self._classes[call.func.id], False
            return None
        made = CONSTRUCTORS.get(qual)
        if (
            made is not None
            and made[0] == "file"
            and call.args
            and self.is_static_path(call.args[0])
        ):
            return None  # a file the application ships has a known, small size
        return made

    def is_static_path(self, expr: ast.expr) -> bool:
        """Whether ``expr`` is a path built from constants and ``__file__`` only."""
        if isinstance(expr, ast.Constant):
            return isinstance(expr.value, str | bytes)
        if isinstance(expr, ast.Name):
            return expr.id == "__file__" or self._is_static_name(expr.id)
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Div):
            return self.is_static_path(expr.left) and self.is_static_path(expr.right)
        if isinstance(expr, ast.Attribute):
            return expr.attr in ("parent", "parents") and self.is_static_path(expr.value)
        if isinstance(expr, ast.Call):
            qual = self.names.qualify(expr.func)
            if qual in PATH_TYPES or qual in _PATH_FUNCTIONS:
                return all(self.is_static_path(a) for a in expr.args)
            if isinstance(expr.func, ast.Attribute) and expr.func.attr in _PATH_METHODS:
                args = [expr.func.value, *expr.args]
                return all(self.is_static_path(a) for a in args)
        return False

    def _is_static_name(self, name: str) -> bool:
        if name in self._static:
            return True
        if name in self._kinds or self._outer is None:
            return False
        return self._outer._is_static_name(name)

    def _annotation_kind(self, annotation: ast.expr | None) -> str | None:
        if annotation is None:
            return None
        if isinstance(annotation, ast.Subscript):  # Annotated[Session, Depends(...)]
            inner = annotation.slice
            first = inner.elts[0] if isinstance(inner, ast.Tuple) and inner.elts else inner
            return self._annotation_kind(first)
        if isinstance(annotation, ast.BinOp):  # Session | None
            return self._annotation_kind(annotation.left) or self._annotation_kind(annotation.right)
        qual = self.names.qualify(annotation)
        made = CONSTRUCTORS.get(qual) if qual else None
        return made[0] if made else None

    def _bind(self, node: ast.AST) -> None:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                self._bind_target(target, node.value)
        elif isinstance(node, ast.AnnAssign):
            if isinstance(node.target, ast.Name):
                kind = self.value_kind(node.value) if node.value else None
                self._kinds[node.target.id] = kind or self._annotation_kind(node.annotation)
        elif isinstance(node, ast.NamedExpr):
            self._bind_target(node.target, node.value)
        elif isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                if item.optional_vars is not None:
                    value = item.context_expr if isinstance(node, ast.With) else None
                    self._bind_target(item.optional_vars, value)
        elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            self._bind_target(node.target, None)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            self._kinds[node.name] = None

    def _bind_target(self, target: ast.expr, value: ast.expr | None) -> None:
        if isinstance(target, ast.Name):
            self._kinds[target.id] = self.value_kind(value) if value is not None else None
            if value is not None and self.is_static_path(value):
                self._static.add(target.id)
            else:
                self._static.discard(target.id)
        elif isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                self._bind_target(element, None)
        elif isinstance(target, ast.Starred):
            self._bind_target(target.value, None)


_BINDERS = (
    ast.Assign,
    ast.AnnAssign,
    ast.NamedExpr,
    ast.With,
    ast.AsyncWith,
    ast.For,
    ast.AsyncFor,
    ast.comprehension,
    ast.ExceptHandler,
)
