"""CPU-heavy loops: ``for`` loops and comprehensions over ``range()`` with constant bounds.

Only loops whose iteration count is known from constants count, nested loops multiply, and the
bar is high (a million iterations), so that the rule stays quiet on ordinary code.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Iterator

HEAVY = 1_000_000  # iterations

Loop = (
    ast.For
    | ast.AsyncFor
    | ast.While
    | ast.ListComp
    | ast.SetComp
    | ast.DictComp
    | ast.GeneratorExp
)
_LOOPS = (
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
)
_NESTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_OPS: dict[type[ast.operator], Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
}


def heavy_loops(body: list[ast.stmt]) -> list[tuple[Loop, int]]:
    """The outermost loops of ``body`` with a known count that run at least ``HEAVY`` times
    (counting the loops nested in them), with that count."""
    found: list[tuple[Loop, int]] = []
    todo = list(_loops_in(body))
    while todo:
        loop = todo.pop()
        total = _work(loop)
        if _count(loop) is not None and total >= HEAVY:
            found.append((loop, total))
        else:
            todo.extend(_loops_in(_inner(loop)))
    return found


def _work(loop: Loop) -> int:
    inner = max((_work(sub) for sub in _loops_in(_inner(loop))), default=1)
    return (_count(loop) or 1) * inner


def _count(loop: Loop) -> int | None:
    """Iterations of the loop itself, when every one of its ranges is constant."""
    if isinstance(loop, ast.For | ast.AsyncFor):
        return _range_len(loop.iter)
    if isinstance(loop, ast.While):
        return None
    counts = [_range_len(gen.iter) for gen in loop.generators]
    if any(c is None for c in counts):
        return None
    return math.prod(c for c in counts if c is not None)


def _inner(loop: Loop) -> list[ast.AST]:
    if isinstance(loop, ast.For | ast.AsyncFor | ast.While):
        return [*loop.body, *loop.orelse]
    if isinstance(loop, ast.DictComp):
        return [loop.key, loop.value]
    return [loop.elt]


def _loops_in(nodes: list[ast.stmt] | list[ast.AST]) -> Iterator[Loop]:
    """The nearest loops under ``nodes``, not looking inside them or into nested scopes."""
    todo: list[ast.AST] = list(nodes)
    while todo:
        node = todo.pop()
        if isinstance(node, _LOOPS):
            yield node
        elif not isinstance(node, _NESTED):
            todo.extend(ast.iter_child_nodes(node))


def _range_len(expr: ast.expr) -> int | None:
    if not (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name)):
        return None
    if expr.func.id != "range" or expr.keywords or not 1 <= len(expr.args) <= 3:
        return None
    values = [_constant(a) for a in expr.args]
    if any(v is None for v in values) or (len(values) == 3 and values[2] == 0):
        return None
    return len(range(*(v for v in values if v is not None)))


def _constant(expr: ast.expr) -> int | None:
    """The value of a small constant integer expression: ``10**6``, ``1_000 * 1_000``, ``-1``."""
    if isinstance(expr, ast.Constant):
        return expr.value if type(expr.value) is int else None
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.USub):
        value = _constant(expr.operand)
        return -value if value is not None else None
    if isinstance(expr, ast.BinOp):
        left, right = _constant(expr.left), _constant(expr.right)
        if left is None or right is None:
            return None
        if isinstance(expr.op, ast.Pow):
            return left**right if 0 <= right <= 64 and abs(left) <= 10**6 else None
        op = _OPS.get(type(expr.op))
        if op is None or (op is operator.floordiv and right == 0):
            return None
        return op(left, right)
    return None
