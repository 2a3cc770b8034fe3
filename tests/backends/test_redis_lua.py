"""The Redis backend's Lua files: every file is used, every placeholder and include resolved.

No Redis needed: this checks the sources offload sends (see test_redis.py for what they touch).
"""

from __future__ import annotations

import re
from importlib import resources

from offload.backends.redis import scripts
from offload.core.states import TRANSITIONS

INCLUDED = {"base", "prelude", "submit_lib"}


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


def test_the_prelude_holds_base_and_only_submit_is_lean() -> None:
    # SUBMIT, one call per job from an endpoint, skips the transition helpers it never uses.
    assert scripts.BASE in scripts.PRELUDE
    assert set(scripts.LEAN) == {"submit"}
    assert "local ALLOWED" not in scripts.script("submit")


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
