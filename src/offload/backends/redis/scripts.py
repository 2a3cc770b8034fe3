"""The Redis backend's Lua scripts: every state transition is one script, run atomically.

Each script gets one key, the namespace root ``{prefix}:`` (KEYS[1]); every key it touches is
that root plus a suffix, so all of a namespace's keys share one hash tag (one Redis Cluster
slot). ``ARGV[1]`` is the time to use, or ``""`` to take it from Redis ``TIME`` (production:
leases and due times never depend on a worker's clock; tests pass a manual clock's time).

Layout under the root ``R``:

- ``R j:<id>``                 hash: the fields of a job that has not ended (absent = None)
- ``R h:<id>``                 list: the transitions of a job that has not ended, after its
                               submit, JSON arrays (the submit is implied by the job's
                               created_at and submitted_as)
- ``R f:<B>``                  hash: the ended jobs created in bucket B (floor(created_at /
                               BUCKET_SECONDS)), id -> compact record with its history (see
                               retire() in prelude.lua, records.ended_hash); when a job ends,
                               its j:, h: and listing index entries go
- ``R fb``                     zset of the buckets, score B (listing walks it newest first)
- ``R fe``                     zset of the buckets holding jobs with a result_ttl, score the
                               soonest finished_at + result_ttl among them (prune)
- ``R ff:<status>``            zset of the buckets holding jobs of that outcome without a
                               result_ttl, score their soonest finished_at (prune by policy)
- ``R fo:<B>:<queue>``         list: the ids of queue's ended jobs left in bucket B, oldest
                               first, kept a minute by prune's count cap for its next batches
- ``R fp``                     hash id -> B for an ended job whose id's time (first 12 hex
                               digits, ms) is not in its bucket B (clock skew, custom ids)
- ``R q:<queue>:<priority>``   zset of ready jobs with no lost lease, score run_at
- ``R qp:<queue>``             zset of the priorities that have ready jobs, score -priority
- ``R c:<queue>:<priority>``   zset of ready jobs of *limited* tasks (caps or rate limits: a
                               claim checks them), score run_at; ``R cp:<queue>`` priorities
- ``R s:<queue>``              zset of ready *suspects* (losses > 0), score run_at
- ``R park:<slot>``            zset of queued jobs of limited tasks that found ``slot`` full at a
                               claim, score run_at: out of the claims' way until it frees
- ``R slots``                  hash ``t\0<task>`` / ``k\0<task>\0<key>`` -> running capped jobs
- ``R tat``                    hash: rate bucket (same names) -> next allowed start
- ``R sched``                  zset of scheduled jobs, score run_at
- ``R run``                    zset of running jobs, score lease_until
- ``R counts``                 hash ``<queue>\\0<status>`` -> count
- ``R i:all`` / ``i:st:<status>`` / ``i:tk:<task>`` / ``i:q:<queue>`` / ``i:tn:<tenant>``
                               zsets of the jobs that have not ended, for listing, score
                               created_at
- ``R expire`` / ``R fin:<status>``  zsets of jobs that ended before buckets (an older
                               offload: their j:<id> keeps its history in fields h1, h2...
                               and its listing entries); still read, listed and pruned
- ``R idem:<tenant>\\0<key>``  string ``<job id>\\0<fingerprint>\\0<expires at>``
- ``R w`` / ``R wseen`` / ``R wexp``  live workers: info JSON, last seen, expiry
- ``R idle:<queue>``           zset of idle workers registered for a hand-off, score the
                               registration's deadline; ``R idlew:<worker>`` its lease and
                               queues; ``R hand:<worker>`` / ``R got:<worker>`` lists of the
                               jobs handed to it, sent / received (see lua/handoff.lua)
- channel ``R wake``           a queue name, published when that queue stops being empty

Floats are written by passing Lua numbers to ``redis.call`` (exact round trip) and returned
as ``%.17g`` strings; never through ``tostring`` or cjson, which keep 14 digits.

The scripts themselves are the files of ``lua/``: ``prelude.lua`` (the helpers every script
starts with; its first part, ``base.lua``, can start a script of :data:`LEAN` alone) and one
file per transition, loaded at import. A line ``-- include: x.lua`` inlines ``x.lua`` (the submit
machinery, shared by SUBMIT and FINISH; the reading of ended records, shared by the prelude and
SUBMIT), and ``__NAME__`` placeholders take the values of
:data:`VALUES` (the state machine generated from ``core.states.TRANSITIONS``, and the
constants below).

On Redis >= 7.0 the same files run as Redis Functions: :data:`LIBRARY` holds the prelude and
``submit_lib.lua`` once, at its top level (Redis builds their helpers when it loads the
library, not on every call), and one function per script (:data:`FUNCTIONS`), whose body is
the script's file. Each function sets ``R`` first; a script's include of ``submit_lib.lua``
becomes a call that sets its ``now`` and ``window`` and resets its tables (:func:`state_of`),
so that nothing is carried from one call to the next. A library runs no code at load (Redis
gives it no ``ipairs``, ``string``...): the shared files' top levels only define things.
conn.Scripts chooses FCALL or EVALSHA at connect time.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from importlib import resources

from offload.backends.base import IDEMPOTENCY_WINDOW
from offload.core.bounds import PRIORITY_MAX, PRIORITY_MIN
from offload.core.job import DEFAULT_QUEUE, DEFAULT_TENANT
from offload.core.states import TRANSITIONS

#: Most due scheduled jobs one claim promotes (the rest wait for the next claim).
PROMOTE_BATCH = 100
#: Most suspects per queue one claim looks at.
SUSPECT_SCAN = 100
#: Jobs waiting for a concurrency slot one claim looks past, per queue.
CAPPED_SCAN = 64
#: Most jobs one claim parks because their slot is full (each is parked once per wait).
PARK_BATCH = 1000
#: Priorities one claim reads at a time (it reads only as many pages as it needs).
PRIORITY_PAGE = 16

#: Seconds of creation time one bucket of ended jobs covers (see docs/benchmarks.md).
BUCKET_SECONDS = 1
#: A bucket takes up to BUCKET_FULL records; once it holds that many, the jobs created in its
#: second go to one of BUCKET_SLICES narrower buckets instead (a slice of the second each), so
#: that listing reads only the slices a page needs at high rates (see retire() in prelude.lua).
BUCKET_FULL = 256
BUCKET_SLICES = 64
#: The fields of an ended job's record, in order (after its created_at, queue, status, history
#: and extra fields); the most common first, as absent trailing ones are left out.
ENDED_FIELDS = (
    "task",
    "tenant",
    "started_at",
    "finished_at",
    "attempts",
    "token",
    "worker_id",
    "submitted_as",
    "args",
    "kwargs",
    "meta",
    "result",
    "error",
    "result_ttl",
    "run_at",
    "updated_at",
    "priority",
    "losses",
    "idempotency_key",
    "concurrency_key",
    "progress",
    "progress_message",
    "cancel_requested",
)

#: Values of those fields a record writes as 0 (as if absent) and reads back: the usual ones.
ENDED_DEFAULTS = {
    "queue": DEFAULT_QUEUE,
    "tenant": DEFAULT_TENANT,
    "submitted_as": "queued",
    "attempts": "1",
    "token": "1",
    "args": "[]",
    "kwargs": "{}",
    "meta": "{}",
}

#: The scripts, one per transition, each in ``lua/<name>.lua``.
NAMES = (
    "submit",
    "submit_bulk",
    "claim",
    "renew",
    "progress",
    "finish",
    "cancel",
    "reap",
    "reclaim",
    "ready",
    "heartbeat",
    "workers",
    "prune",
    "list",
)
_LUA = resources.files("offload.backends.redis") / "lua"
_PLACEHOLDER = re.compile(r"__([A-Z][A-Z_]*[A-Z])__")
_INCLUDE = re.compile(r"^-- include: (\w+)\.lua\n", re.MULTILINE)


def _transitions_table() -> str:
    rows = []
    for source, targets in TRANSITIONS.items():
        name = "new" if source is None else source.value
        allowed = ", ".join(f"['{t.value}'] = true" for t in sorted(targets))
        rows.append(f"['{name}'] = {{{allowed}}}")
    return "{" + ", ".join(rows) + "}"


#: What each ``__NAME__`` placeholder of the Lua files stands for.
VALUES: dict[str, str] = {
    "TRANSITIONS": _transitions_table(),
    "IDEMPOTENCY_WINDOW": repr(IDEMPOTENCY_WINDOW),
    "PRIORITY_MIN": str(PRIORITY_MIN),
    "PRIORITY_MAX": str(PRIORITY_MAX),
    "PROMOTE_BATCH": str(PROMOTE_BATCH),
    "SUSPECT_SCAN": str(SUSPECT_SCAN),
    "CAPPED_SCAN": str(CAPPED_SCAN),
    "PARK_BATCH": str(PARK_BATCH),
    "PRIORITY_PAGE": str(PRIORITY_PAGE),
    "BUCKET_SECONDS": str(BUCKET_SECONDS),
    "BUCKET_FULL": str(BUCKET_FULL),
    "BUCKET_SLICES": str(BUCKET_SLICES),
    "ENDED_FIELDS": "{" + ", ".join(f"'{name}'" for name in ENDED_FIELDS) + "}",
    "ENDED_DEFAULTS": "{" + ", ".join(f"{k} = '{v}'" for k, v in ENDED_DEFAULTS.items()) + "}",
    "ENDED_SLOTS": "{"
    + ", ".join(
        f"{name} = {i}"
        for i, name in enumerate(("created_at", "queue", "status", "", "", *ENDED_FIELDS), 1)
        if name
    )
    + "}",
}


def load(name: str, include: Callable[[str], str] | None = None) -> str:
    """``lua/<name>.lua`` with its includes inlined (or replaced by ``include(file)``) and its
    placeholders replaced (an unknown placeholder is a KeyError at import, not a Lua error at
    the first call)."""
    source = (_LUA / f"{name}.lua").read_text(encoding="utf-8")
    source = _INCLUDE.sub(lambda m: (include or load)(m[1]), source)
    return _PLACEHOLDER.sub(lambda m: VALUES[m[1]], source)


PRELUDE = load("prelude")
BASE = load("base")
SCRIPTS: dict[str, str] = {name: load(name) for name in NAMES}
#: Scripts that start with ``base.lua`` alone, for scripts that need none of the prelude's
#: helpers (running their definitions costs ~9 us per call on a busy 2-core machine). SUBMIT
#: includes ``ended_read.lua`` itself (``locate`` and ``job_flat``: an idempotency key's job or
#: a resubmitted id may have ended).
LEAN: frozenset[str] = frozenset({"submit"})


def script(name: str) -> str:
    """The full source of one script: its prelude (the shared one, or base.lua for a lean
    script) and its body."""
    return (BASE if name in LEAN else PRELUDE) + SCRIPTS[name]


# -- Redis Functions (Redis >= 7.0) ------------------------------------------------------------
#: The flags of the scripts' functions (the others have none: Redis refuses them when its
#: memory is full). Scripts that only read are ``no-writes``; PRUNE, which frees memory, is
#: ``allow-oom`` (Redis refuses an EVALSHA script only at a first command that may grow
#: memory, so PRUNE could often free memory on a full server: a function without the flag is
#: refused before it starts).
FLAGS: dict[str, str] = {
    "list": "no-writes",
    "ready": "no-writes",
    "workers": "no-writes",
    "prune": "allow-oom",
}
#: The files the scripts include that the library holds once, at its top level, with the
#: names each including script passes in: a script's ``-- include:`` line becomes a call that
#: sets them and resets the file's state (see state_of). The prelude's own files (PRELUDE_FILES:
#: constants and functions only, over ``R``, which each function sets first) are dropped.
SHARED: dict[str, tuple[str, ...]] = {"submit_lib": ("now", "window")}
PRELUDE_FILES = frozenset({"base", "ended_read", "prelude"})
_OPENS = re.compile(r"\b(?:function|do|if|repeat)\b")
_CLOSES = re.compile(r"\b(?:end|until)\b")
_STRING = re.compile(r"'(?:\\.|[^'\\])*'|\"(?:\\.|[^\"\\])*\"")
_LOCAL = re.compile(r"local\s+(?!function\b)([\w\s,]+?)\s*(?:=\s*(.*?))?\s*$")


def state_of(source: str) -> list[str]:
    """The per-call state of a shared file: its top-level ``local`` variables that are not
    functions, as Lua assignments of their initial values (one line each), which the library
    runs again at each call's include. A ValueError for what it cannot re-run: a variable
    without a value, or one over several lines."""
    depth, out = 0, []
    for line in source.splitlines():
        code = _STRING.sub("''", line).split("--", 1)[0]
        if "[[" in code:
            raise ValueError(f"long strings are not supported in shared Lua files: {line!r}")
        local = _LOCAL.match(code) if depth == 0 else None
        if local:
            value = local[2] or ""
            if not value or sum(value.count(c) for c in "({[") != sum(
                value.count(c) for c in ")}]"
            ):
                raise ValueError(f"state of a shared Lua file needs a one-line value: {line!r}")
            out.append(f"{local[1].strip()} = {value}")
        depth += len(_OPENS.findall(code)) - len(_CLOSES.findall(code))
    return out


def _enter(name: str) -> str:
    return "" if name in PRELUDE_FILES else f"enter_{name}({', '.join(SHARED[name])})\n"


def _library() -> tuple[str, dict[str, str]]:
    """One Functions library holding every script: the shared files' definitions at its top
    level, built once when Redis loads it (a script's EVAL builds them on every call), and
    one function per script whose body is the script's file. The library and its functions
    are named after a hash of the whole source, so that versions never collide."""
    base = load("prelude")
    if base.count("\nlocal R = KEYS[1]\n") != 1:
        raise ValueError("base.lua must set R with the line 'local R = KEYS[1]'")
    parts = ["#!lua name=offload___HASH__\n", base.replace("\nlocal R = KEYS[1]\n", "\nlocal R\n")]
    for name, params in SHARED.items():
        source, state = load(name), state_of(load(name))
        if params:
            parts.append(f"local {', '.join(params)}\n")
        parts.append(source)
        args = ", ".join(f"{p}_" for p in params)
        sets = "".join(f"  {p} = {p}_\n" for p in params) + "".join(f"  {s}\n" for s in state)
        parts.append(f"local function enter_{name}({args})\n{sets}end\n")
    functions = {}
    for name in NAMES:
        body = load(name, lambda f: _enter(f) if f in SHARED or f in PRELUDE_FILES else load(f))
        flags = f", flags = {{'{FLAGS[name]}'}}" if name in FLAGS else ""
        functions[name] = f"offload___HASH___{name}"
        parts.append(
            f"redis.register_function{{function_name = '{functions[name]}'{flags},\n"
            f"callback = function(KEYS, ARGV)\nR = KEYS[1]\n{body}end}}\n"
        )
    text = "".join(parts)
    digest = hashlib.sha1(text.encode()).hexdigest()[:16]
    return text.replace("__HASH__", digest), {
        k: v.replace("__HASH__", digest) for k, v in functions.items()
    }


#: The library's source (for FUNCTION LOAD) and each script's function name (for FCALL).
LIBRARY, FUNCTIONS = _library()
