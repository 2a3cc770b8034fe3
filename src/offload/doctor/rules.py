"""The rules that read one module: blocking calls in ``async def`` (OFF101-OFF107), a thread per
request (OFF201), dropped tasks (OFF202) and CPU work in async route handlers (OFF401, OFF402).

Each rule errs on the side of silence: a call is reported only when its target is known for
certain (an import, or an object made by a known constructor), and a call that is awaited, or
sits in a nested ``def``/``lambda`` (which is how code is handed to a thread), is never reported.
"""

from __future__ import annotations

import ast

from offload.doctor.catalog import (
    CALLS,
    KINDS,
    LOOP_GETTERS,
    PATH_READS,
    SDK_METHODS,
    SDK_MODULES,
    TASK_SPAWNERS,
    Kind,
)
from offload.doctor.cpu import heavy_loops
from offload.doctor.findings import RULES, Hit
from offload.doctor.kinds import AnyFunction, Bindings, scope_nodes
from offload.doctor.names import Names, dotted

_ROUTE_METHODS = frozenset(
    {
        "get",
        "post",
        "put",
        "patch",
        "delete",
        "head",
        "options",
        "trace",
        "route",
        "api_route",
        "websocket",
        "websocket_route",
    }
)
_SPAWN_METHODS = frozenset({"create_task", "ensure_future"})
_LIFECYCLE = frozenset({"lifespan", "aenter", "main", "run", "serve", "open", "connect"})


def check_module(tree: ast.Module, names: Names) -> list[Hit]:
    """Every hit of the per-module rules, one per (line, column, code), in source order."""
    module = Bindings.for_module(tree, names)
    hits: list[Hit] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            hits += _check_function(node, module)
    hits += _dropped_tasks(tree, names)
    unique = {(h.line, h.col, h.code): h for h in reversed(hits)}  # the first one wins
    return sorted(unique.values(), key=lambda h: (h.line, h.col, h.code))


def is_route_handler(func: AnyFunction) -> bool:
    """Decorated as a FastAPI/Starlette/Flask route: ``@app.get("/x")``, ``@bp.route("/")``."""
    for dec in func.decorator_list:
        if not (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute)):
            continue
        if dec.func.attr not in _ROUTE_METHODS:
            continue
        path = dec.args[0] if dec.args else None
        path = path or next((k.value for k in dec.keywords if k.arg in ("path", "rule")), None)
        if isinstance(path, ast.Constant) and isinstance(path.value, str):
            return path.value == "" or path.value.startswith("/")
    return False


def _check_function(func: AnyFunction, module: Bindings) -> list[Hit]:
    is_async = isinstance(func, ast.AsyncFunctionDef)
    is_route = is_route_handler(func)
    if not (is_async or is_route):
        return []
    scope = module.for_function(func)
    where = describe(func)
    startup = is_startup(func)
    hits: list[Hit] = []
    for call in direct_calls(func.body):
        found = blocking_call(call, scope)
        if found is None:
            continue
        code, shown = found
        if applies(code, is_async=is_async, is_route=is_route, startup=startup):
            title = f"{RULES[code].what}: {shown} in {where}"
            hits.append(Hit(call.lineno, call.col_offset + 1, code, title))
    if is_async and is_route:
        for loop, count in heavy_loops(func.body):
            title = f"{RULES['OFF401'].what}: {count:,} iterations in {where}"
            hits.append(Hit(loop.lineno, loop.col_offset + 1, "OFF401", title))
    return hits


def describe(func: AnyFunction) -> str:
    """``async def name`` or ``route handler name``, as titles say where a call is."""
    is_async = isinstance(func, ast.AsyncFunctionDef)
    return f"{'async def' if is_async else 'route handler'} {func.name}"


def direct_calls(body: list[ast.stmt]) -> list[ast.Call]:
    """The calls ``body`` makes in its own scope without awaiting them, innermost first (so
    that ``conn.execute(q).fetchall()`` is reported as ``conn.execute()``)."""
    nodes = list(scope_nodes(body))
    awaited = {id(n.value) for n in nodes if isinstance(n, ast.Await)}
    calls = [n for n in nodes if isinstance(n, ast.Call) and id(n) not in awaited]
    calls.sort(key=lambda c: (c.lineno, c.col_offset, c.end_lineno or 0, c.end_col_offset or 0))
    return calls


def applies(code: str, *, is_async: bool, is_route: bool, startup: bool) -> bool:
    if code == "OFF201":  # threads started once, from a startup hook, are a bounded set
        return is_route or (is_async and not startup)
    if code.startswith("OFF4"):
        return is_async and is_route
    return is_async


def is_startup(func: AnyFunction) -> bool:
    """A lifespan or startup hook (by decorator or name), which runs once, not per request."""
    for dec in func.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name in ("on_event", "asynccontextmanager", "contextmanager"):
            return True
    bare = func.name.strip("_")
    return bare in _LIFECYCLE or bare.startswith(("start", "setup", "init", "on_startup"))


def blocking_call(call: ast.Call, scope: Bindings) -> tuple[str, str] | None:
    """``(code, callee as shown)`` when ``call`` blocks (or, for OFF2/OFF4, misbehaves)."""
    qual = scope.names.qualify(call.func)
    shown = dotted(call.func)
    text = f"{shown}()"
    if qual is not None:
        if qual != shown and not qual.startswith("builtins."):
            text += f" ({qual})"
        code = CALLS.get(qual) or _module_sdk_call(qual)
        if code is not None:
            return code, text
    made = scope.constructor(call)
    if made is not None and made[1] and (call.args or call.keywords):
        return KINDS[made[0]].code, text
    if not isinstance(call.func, ast.Attribute):
        return None
    owner = scope.value_kind(call.func.value)
    if owner is not None and _method_blocks(KINDS[owner], call):
        made_here = isinstance(call.func.value, ast.Call) and scope.constructor(call.func.value)
        return KINDS[owner].code, text if made_here else f"{text} on a {KINDS[owner].label}"
    if call.func.attr in PATH_READS and not call.args:
        return None if scope.is_static_path(call.func.value) else ("OFF107", text)
    return None


def _module_sdk_call(qual: str) -> str | None:
    parts = qual.split(".")
    if len(parts) < 3 or parts[0] not in SDK_MODULES or parts[-1] not in SDK_METHODS:
        return None
    return None if any(p.startswith("Async") for p in parts) else "OFF106"


def _method_blocks(kind: Kind, call: ast.Call) -> bool:
    assert isinstance(call.func, ast.Attribute)
    name = call.func.attr
    if kind.no_arguments_only and (call.args or call.keywords):
        return False
    if kind.methods is None:
        return name not in kind.safe and not name[:1].isupper() and not name.startswith("_")
    return name in kind.methods


def _dropped_tasks(tree: ast.Module, names: Names) -> list[Hit]:
    loops = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and names.qualify(node.value.func) in LOOP_GETTERS
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    hits: list[Hit] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            hits += _tasks_left_in_locals(node, names, loops)
        if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
            continue
        func = node.value.func
        if _is_spawn(func, names, loops):
            title = f"{RULES['OFF202'].what}: the task from {dotted(func)}() is not kept"
            hits.append(Hit(node.lineno, node.col_offset + 1, "OFF202", title))
    return hits


def _is_spawn(func: ast.expr, names: Names, loops: set[str]) -> bool:
    return names.qualify(func) in TASK_SPAWNERS or _is_loop_spawn(func, names, loops)


def _tasks_left_in_locals(func: AnyFunction, names: Names, loops: set[str]) -> list[Hit]:
    """``task = asyncio.create_task(...)`` in a function that never reads ``task`` again: the
    local goes when the function returns, and the loop keeps only a weak reference."""
    read = {n.id for n in ast.walk(func) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    shared = {
        name for n in ast.walk(func) if isinstance(n, ast.Global | ast.Nonlocal) for name in n.names
    }
    hits: list[Hit] = []
    for node in scope_nodes(func.body):
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        target = node.targets[0]
        if len(node.targets) > 1 or not isinstance(target, ast.Name) or target.id in read | shared:
            continue
        if _is_spawn(node.value.func, names, loops):
            title = (
                f"{RULES['OFF202'].what}: the task from {dotted(node.value.func)}() is "
                f"kept only in the local {target.id!r}, never used"
            )
            hits.append(Hit(node.lineno, node.col_offset + 1, "OFF202", title))
    return hits


def _is_loop_spawn(func: ast.expr, names: Names, loops: set[str]) -> bool:
    """``loop.create_task(...)`` on an event loop (a TaskGroup's create_task is fine)."""
    if not (isinstance(func, ast.Attribute) and func.attr in _SPAWN_METHODS):
        return False
    owner = func.value
    if isinstance(owner, ast.Call):
        return names.qualify(owner.func) in LOOP_GETTERS
    if isinstance(owner, ast.Name):
        return owner.id in loops or _looks_like_loop(owner.id)
    return isinstance(owner, ast.Attribute) and _looks_like_loop(owner.attr)


def _looks_like_loop(name: str) -> bool:
    return name == "loop" or name.endswith("_loop")
