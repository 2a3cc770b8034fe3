"""The rule catalog (code, severity, fix) and the ``Finding`` value every rule produces."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from offload.errors import ConfigurationError

Severity = Literal["error", "warning"]

_TASKS = "see docs/guide/tasks.md"


@dataclass(frozen=True, slots=True)
class Rule:
    """One check: its code, what it finds and the offload way to fix it."""

    code: str
    name: str
    severity: Severity
    what: str  # the start of a title: "blocking HTTP call"
    fix: str


@dataclass(frozen=True, slots=True)
class Hit:
    """A finding before it knows its file: 1-based line and column, code and title."""

    line: int
    col: int
    code: str
    title: str


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem at one place: ``path:line:col`` (both 1-based), what it is and the fix."""

    path: str
    line: int
    col: int
    code: str
    title: str
    fix: str
    severity: Severity

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "line": self.line,
            "col": self.col,
            "code": self.code,
            "title": self.title,
            "fix": self.fix,
            "severity": self.severity,
        }


_ALL = (
    Rule(
        "OFF001",
        "unreadable-file",
        "warning",
        "could not parse",
        "fix the file so that Python can parse it; offload doctor skipped it",
    ),
    Rule(
        "OFF101",
        "blocking-http",
        "error",
        "blocking HTTP call",
        "move the call into an @app.task (a plain def runs in the worker's thread pool) and "
        "`await task.asubmit(...)`; if the endpoint must wait for the answer, use "
        f"httpx.AsyncClient; {_TASKS}",
    ),
    Rule(
        "OFF102",
        "blocking-sleep",
        "error",
        "blocking sleep",
        "use `await asyncio.sleep(...)`; to run work later, submit an @app.task with "
        f".options(delay=...); {_TASKS}",
    ),
    Rule(
        "OFF103",
        "blocking-subprocess",
        "error",
        "blocking subprocess call",
        "run the command in an @app.task with offload.run_process([...], timeout=...) (its own "
        f"process group, killed on timeout or cancel) and submit it; {_TASKS}",
    ),
    Rule(
        "OFF104",
        "blocking-smtp",
        "error",
        "blocking SMTP call",
        f"send e-mail from an @app.task(retries=3) (plain def) and submit it; {_TASKS}",
    ),
    Rule(
        "OFF105",
        "blocking-database",
        "error",
        "blocking database call",
        "use the driver's async API (aiosqlite, asyncpg, psycopg AsyncConnection, SQLAlchemy "
        "AsyncSession), declare the endpoint with a plain `def`, or move the work into an "
        f"@app.task; {_TASKS}",
    ),
    Rule(
        "OFF106",
        "blocking-sdk-client",
        "error",
        "blocking SDK call",
        "use the SDK's async client (openai.AsyncOpenAI, anthropic.AsyncAnthropic, aioboto3), "
        f"or move the call into an @app.task and submit it; {_TASKS}",
    ),
    Rule(
        "OFF107",
        "blocking-file-read",
        "error",
        "blocking file read",
        "read files of unknown size in an @app.task, or with "
        f"`await asyncio.to_thread(path.read_bytes)`; {_TASKS}",
    ),
    Rule(
        "OFF201",
        "thread-per-request",
        "error",
        "thread per request",
        "do not start a thread per request: submit an @app.task (bounded worker slots, durable, "
        "with status), or use one module-level ThreadPoolExecutor(max_workers=N); "
        "see docs/guide/workers.md",
    ),
    Rule(
        "OFF202",
        "dropped-task",
        "warning",
        "task dropped",
        "keep a reference (`tasks.add(t); t.add_done_callback(tasks.discard)`) or use "
        "asyncio.TaskGroup; for work that must outlive the request, submit an @app.task; "
        f"{_TASKS}",
    ),
    Rule(
        "OFF301",
        "gevent-unpatched",
        "error",
        "gevent without monkey.patch_all() first",
        "make `from gevent import monkey; monkey.patch_all()` the first lines of the entry "
        "module, before any other import; see docs/guide/doctor.md",
    ),
    Rule(
        "OFF401",
        "cpu-loop-in-handler",
        "warning",
        "CPU-heavy loop",
        'run CPU-bound work in an @app.task(executor="process") and submit it; ' + _TASKS,
    ),
    Rule(
        "OFF402",
        "cpu-call-in-handler",
        "warning",
        "CPU-heavy call",
        'move hashing and image work into an @app.task(executor="process") and submit it, or '
        f"`await asyncio.to_thread(...)` for a single short call; {_TASKS}",
    ),
)

RULES: dict[str, Rule] = {rule.code: rule for rule in _ALL}


def make(code: str, path: str, line: int, col: int, title: str, fix: str | None = None) -> Finding:
    """A finding of rule ``code``; ``fix`` replaces the rule's general fix when given."""
    rule = RULES[code]
    return Finding(path, line, col, code, title, fix or rule.fix, rule.severity)


def enabled_codes(select: Iterable[str] = (), ignore: Iterable[str] = ()) -> frozenset[str]:
    """The codes left by ``select`` (default: all) minus ``ignore``; both match by prefix.

    :raises ConfigurationError: a code or prefix that matches no rule.
    """
    chosen = _matching(select) if select else set(RULES)
    return frozenset(chosen - _matching(ignore))


def _matching(prefixes: Iterable[str]) -> set[str]:
    codes: set[str] = set()
    for prefix in prefixes:
        hits = {code for code in RULES if code.startswith(prefix.strip().upper())}
        if not prefix.strip() or not hits:
            known = ", ".join(RULES)
            raise ConfigurationError(f"unknown rule code {prefix!r} (known: {known})")
        codes |= hits
    return codes
