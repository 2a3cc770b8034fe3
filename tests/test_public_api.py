"""The curated public surface: ``offload.__all__`` is honest and complete."""

from __future__ import annotations

import types

import offload


def test_all_names_exist_and_are_sorted() -> None:
    for name in offload.__all__:
        assert hasattr(offload, name), name
    assert list(offload.__all__) == sorted(offload.__all__)


def test_every_public_attribute_is_exported() -> None:
    public = {
        name
        for name, value in vars(offload).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= set(offload.__all__)


def test_errors_share_one_root() -> None:
    from offload import errors

    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert all(issubclass(c, offload.OffloadError) for c in classes)
    for cls in classes:
        assert cls.__doc__, f"{cls.__name__} needs a one-line docstring"
        assert cls.__name__ in (errors.__doc__ or ""), f"{cls.__name__} missing from the tree"
