"""The Redis backend's Lua files: every file is used, every placeholder and include resolved.

No Redis needed: this checks the sources offload sends (see test_redis.py for what they touch).
"""

from __future__ import annotations

import re
from importlib import resources

from offload.backends.redis import scripts
from offload.core.states import TRANSITIONS

INCLUDED = {"base", "prelude", "submit_lib", "ended_read", "handoff"}


def test_every_lua_file_is_a_script_or_included_by_one() -> None:
    folder = resources.files("offload.backends.redis") / "lua"
    files = {p.name.removesuffix(".lua") for p in folder.iterdir() if p.name.endswith(".lua")}
    assert files == set(scripts.NAMES) | INCLUDED


def test_loaded_scripts_have_no_placeholder_or_include_left() -> None:
    for name in scripts.NAMES:
        source = scripts.script(name)
        assert re.search(r"__[A-Z][A-Z_]*__", source) is None, name
        assert "-- include:" not in source, name
        prelude = scripts.BASE if name in scripts.LEAN else scripts.PRELUDE
        assert source.startswith(prelude), name


def test_the_prelude_holds_base_and_a_lean_script_calls_only_what_it_defines() -> None:
    assert scripts.BASE in scripts.PRELUDE
    # SUBMIT reads ended jobs from their buckets: lean, it includes ended_read.lua itself.
    assert scripts.load("ended_read") in scripts.PRELUDE
    assert scripts.load("ended_read") in scripts.SCRIPTS["submit"]
    defined = set(re.findall(r"local function (\w+)", scripts.PRELUDE))
    for name in scripts.LEAN:
        source = re.sub(r"--[^\n]*", "", scripts.script(name))  # its code, not its comments
        own = set(re.findall(r"local function (\w+)", source))
        for helper in defined - own:  # a prelude helper a lean script does not define
            assert re.search(rf"\b{helper}\(", source) is None, (name, helper)
        for value in re.findall(r"^local (\w+) =", scripts.PRELUDE, re.MULTILINE):
            if re.search(rf"^local {value} =", source, re.MULTILINE) is None:
                assert re.search(rf"\b{value}\b", source) is None, (name, value)


def test_the_state_table_is_generated_from_the_transitions() -> None:
    for source, targets in TRANSITIONS.items():
        name = "new" if source is None else source.value
        for target in targets:
            assert f"['{target.value}'] = true" in scripts.VALUES["TRANSITIONS"], (name, target)
        assert f"['{name}'] = {{" in scripts.PRELUDE


def test_both_scripts_that_submit_share_the_submit_machinery() -> None:
    lib = scripts.load("submit_lib")
    assert lib in scripts.SCRIPTS["submit"]
    assert lib in scripts.SCRIPTS["finish"]
