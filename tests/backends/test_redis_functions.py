"""Redis Functions (issue 22 item 2): every script a function of one library whose shared
helpers Redis builds once, the EVALSHA fallback (Redis 6.2, FUNCTION LOAD refused), loading
again after a restart that lost them, and no state carried from one call to the next."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis import exceptions as rex

from offload.backends.redis import RedisBackend
from offload.backends.redis import scripts as lua
from offload.backends.redis.bulk import BULK_MIN
from offload.backends.redis.conn import choose_scripts
from offload.core.job import JobFilter, JobRecord, Lease, NewJob
from offload.core.states import State
from offload.errors import BackendError
from rediskit import RedisServer

LEASE = 30.0
ALL = {"default": 1000, "other": 1000}


def job(n: int, **fields: Any) -> NewJob:
    fields.setdefault("args", [n])
    return NewJob(id=f"{n:032x}", task="tasks.echo", kwargs={}, **fields)


@pytest.fixture
def admin(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(port=server.port, decode_responses=True)
    yield client
    client.close()


async def opened(server: RedisServer, prefix: str, *, functions: bool = True) -> RedisBackend:
    backend = RedisBackend(f"{server.url}?prefix={prefix}", functions=functions)
    await backend.open()
    return backend


def calls(admin: redis.Redis) -> dict[str, int]:
    stats = admin.info("commandstats")
    return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("fcall", "evalsha")}


def libraries(admin: redis.Redis) -> list[str]:
    listing = admin.function_list()
    return [dict(zip(lib[::2], lib[1::2], strict=True))["library_name"] for lib in listing]


async def listed(backend: RedisBackend, status: State | None = None) -> set[str]:
    page = await backend.list_jobs(JobFilter(status=status, limit=500))
    return {r.id for r in page.jobs}


async def done(backend: RedisBackend, claimed: list[JobRecord], **then: Any) -> None:
    for r in claimed:
        await backend.complete(Lease(r.id, r.token), {"n": r.args}, **then)


# -- the library -------------------------------------------------------------------------------


def test_the_library_defines_the_shared_helpers_once_and_a_function_per_script() -> None:
    name = re.match(r"#!lua name=(offload_[0-9a-f]{16})\n", lua.LIBRARY)
    assert name is not None
    assert set(lua.FUNCTIONS) == set(lua.NAMES)
    for script, function in lua.FUNCTIONS.items():
        assert function == f"{name[1]}_{script}"
        assert lua.LIBRARY.count(f"function_name = '{function}'") == 1
    for helper in ("retire", "job_flat", "submit_group", "apply_submits", "clock"):
        assert lua.LIBRARY.count(f"local function {helper}(") == 1
    code = re.sub(r"--[^\n]*", "", lua.LIBRARY)  # KEYS only where each function sets R
    assert code.count("KEYS") == 2 * len(lua.NAMES)
    assert code.count("\nR = KEYS[1]\n") == len(lua.NAMES)
    # SUBMIT and FINISH reset the submit machinery's state on entry, with their now and window
    assert lua.LIBRARY.count("enter_submit_lib(now, window)\n") == 3  # submit, bulk, finish
    enter = lua.LIBRARY[lua.LIBRARY.index("local function enter_submit_lib") :]
    assert "seen = {}" in enter.split("\nend\n")[0]


def test_state_of_reads_the_top_level_variables_of_a_shared_file() -> None:
    source = (
        "local a = {}  -- per call\n"
        "local b, c = {}, 0\n"
        "local function f(x)\n"
        "local inner = {}\n"
        "  if x then local y = 1 end\n"
        "  return inner\n"
        "end\n"
        "local s = 'end -- not code'\n"
    )
    assert lua.state_of(source) == ["a = {}", "b, c = {}, 0", "s = ''"]
    with pytest.raises(ValueError, match="one-line value"):
        lua.state_of("local t = {1,\n  2}\n")
    with pytest.raises(ValueError, match="one-line value"):
        lua.state_of("local x\n")


async def test_the_choice_falls_back_to_evalsha_when_function_load_is_refused() -> None:
    class Old:  # Redis 6.2 does not know FUNCTION
        async def execute_command(self, *args: Any) -> Any:
            raise rex.ResponseError("unknown command 'FUNCTION', with args beginning with: ")

    fake: Any = Old()
    assert (await choose_scripts(fake, True, "{t}:")).functions is False
    assert (await choose_scripts(fake, False, "{t}:")).functions is False


# -- on a server -------------------------------------------------------------------------------


@pytest.mark.parametrize("functions", [True, False], ids=["fcall", "evalsha"])
async def test_jobs_run_start_to_end_on_both_paths(
    server: RedisServer, admin: redis.Redis, functions: bool
) -> None:
    backend = await opened(server, f"life-{functions}", functions=functions)
    try:
        assert backend._scripts.functions is functions
        before = calls(admin)
        [one] = await backend.submit([job(1)])
        [two] = await asyncio.to_thread(backend.submit_blocking, [job(2)])
        many = await backend.submit([job(100 + i) for i in range(BULK_MIN)])
        claimed = await backend.claim("w", ALL, 1000, LEASE)
        assert {r.id for r in claimed} == {one.id, two.id} | {r.id for r in many}
        await done(backend, claimed[:1], then=[job(9, queue="other")])
        await done(backend, claimed[1:])
        [after] = await backend.claim("w", ALL, 10, LEASE)
        assert after.id == job(9).id
        await done(backend, [after])
        assert len(await listed(backend, State.SUCCEEDED)) == len(claimed) + 1
        used = {k: v - before[k] for k, v in calls(admin).items()}
        assert (used["fcall"] > 0, used["evalsha"] > 0) == (functions, not functions), used
    finally:
        await backend.close()


@pytest.mark.parametrize("functions", [True, False], ids=["fcall", "evalsha"])
async def test_every_path_loads_its_script_again_after_the_server_lost_it(
    server: RedisServer, admin: redis.Redis, functions: bool
) -> None:
    """FUNCTION FLUSH and SCRIPT FLUSH: what a restart without persistence leaves (the
    connections stay up, so that each path meets "Function not found" or NOSCRIPT)."""
    backend = await opened(server, f"lost-{functions}", functions=functions)

    def lose() -> None:
        admin.function_flush()
        admin.script_flush()

    try:
        lose()
        assert len(await backend.submit([job(1)])) == 1  # the submit lane
        lose()
        assert len(await asyncio.to_thread(backend.submit_blocking, [job(2)])) == 1  # sync face
        lose()
        many = await backend.submit([job(100 + i) for i in range(BULK_MIN)])  # bulk chunks
        lose()
        claimed = await backend.claim("w", ALL, 1000, LEASE)  # the claim lane
        assert len(claimed) == 2 + len(many)
        lose()
        await done(backend, claimed)  # the finish lane
        lose()
        assert len(await listed(backend)) == len(claimed)  # a pooled connection (LIST)
        lose()
        assert await backend.workers() == []
        if functions:
            assert libraries(admin) == [lua.LIBRARY.split("=", 1)[1].split("\n", 1)[0]]
    finally:
        await backend.close()


async def test_a_restart_without_persistence_loads_the_library_again(
    server: RedisServer, admin: redis.Redis
) -> None:
    backend = await opened(server, "restart")
    try:
        await backend.submit([job(1)])
        server.kill()
        server.start()  # empty: no AOF, no RDB
        assert libraries(admin) == []
        [two] = await backend.submit([job(2)])  # safe to repeat: retried on a new connection
        claimed: list[JobRecord] = []
        for _ in range(3):  # a claim is never repeated: its broken lane fails once
            try:
                claimed = await backend.claim("w", ALL, 10, LEASE)
                break
            except Exception:
                continue
        assert [r.id for r in claimed] == [two.id]
        await done(backend, claimed)
        assert await listed(backend, State.SUCCEEDED) == {two.id}
        assert libraries(admin) == [lua.LIBRARY.split("=", 1)[1].split("\n", 1)[0]]
    finally:
        await backend.close()


@pytest.mark.parametrize(
    ("refused", "said"),
    [("-function", "Redis refused FUNCTION LOAD"), ("-fcall", "Redis refused FCALL")],
    ids=["function-load", "fcall"],
)
async def test_a_user_refused_functions_runs_the_scripts_with_evalsha(
    server: RedisServer,
    admin: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    refused: str,
    said: str,
) -> None:
    """An ACL may refuse FUNCTION LOAD, or allow it and refuse FCALL: either way EVALSHA."""
    admin.execute_command("ACL", "SETUSER", "nofn", "on", ">pw", "~*", "&*", "+@all", refused)
    backend = RedisBackend(f"redis://nofn:pw@127.0.0.1:{server.port}/0?prefix=acl{refused}")
    try:
        with caplog.at_level(logging.INFO, logger="offload.backends.redis"):
            await backend.open()
        assert backend._scripts.functions is False
        assert said in caplog.text
        assert "scripts run with EVALSHA" in caplog.text
        [one] = await backend.submit([job(1)])
        claimed = await backend.claim("w", ALL, 10, LEASE)
        assert [r.id for r in claimed] == [one.id]
        await done(backend, claimed)
    finally:
        await backend.close()
        admin.execute_command("ACL", "DELUSER", "nofn")


async def test_a_full_server_still_prunes_and_lists_and_refuses_writes_clearly(
    server: RedisServer, admin: redis.Redis
) -> None:
    backend = await opened(server, "full")
    try:
        [one] = await backend.submit([job(1)])
        admin.config_set("maxmemory", "1")  # noeviction: every write that may grow is refused
        try:
            assert await listed(backend) == {one.id}  # no-writes
            assert await backend.prune() == 0  # allow-oom: it frees memory
            with pytest.raises(BackendError, match="maxmemory"):
                await backend.submit([job(2)])
        finally:
            admin.config_set("maxmemory", "0")
        assert len(await backend.submit([job(2)])) == 1
    finally:
        await backend.close()


async def test_two_namespaces_interleaved_share_no_state(server: RedisServer) -> None:
    """The library's variables outlive a call: R and the submit machinery's tables must be
    set afresh by each call, so calls of two namespaces, interleaved, see only their own."""
    a, b = await opened(server, "ns-a"), await opened(server, "ns-b")
    try:
        # The same idempotency key and ids in both, with other fingerprints: no conflict, no
        # job of the other namespace returned as stored.
        [ka] = await a.submit([job(1, idempotency_key="k")])
        [kb] = await b.submit([job(2, idempotency_key="k", args=["other"])])
        [xa] = await a.submit([job(7)])
        [xb] = await b.submit([job(7, queue="other")])
        assert (kb.id, xb.queue, xa.queue) == (job(2).id, "other", "default")
        [ka2] = await a.submit([job(3, idempotency_key="k")])  # a's own key: a's job
        assert ka2.id == ka.id
        got_a = await a.claim("wa", ALL, 10, LEASE)
        got_b = await b.claim("wb", ALL, 10, LEASE)
        assert {r.id for r in got_a} == {ka.id, xa.id}
        assert {r.id for r in got_b} == {kb.id, xb.id}
        # FINISH with successors, interleaved: each stores its own (same key, same ids)
        await done(a, got_a[:1], then=[job(20, idempotency_key="t")])
        await done(b, got_b[:1], then=[job(20, idempotency_key="t", args=["b"])])
        await done(a, got_a[1:])
        await done(b, got_b[1:])
        [sa] = await a.claim("wa", ALL, 10, LEASE)
        [sb] = await b.claim("wb", ALL, 10, LEASE)
        assert (sa.args, sb.args) == ([20], ["b"])
        assert await listed(a) == {ka.id, xa.id, sa.id}
        assert await listed(b) == {kb.id, xb.id, sb.id}
        assert len(await listed(a, State.SUCCEEDED)) == len(await listed(b, State.SUCCEEDED)) == 2
    finally:
        await a.close()
        await b.close()
