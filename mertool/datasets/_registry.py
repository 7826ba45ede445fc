"""The dataset-adapter registry: :func:`register_dataset`, lookup by name."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import unknown_name
from ..samples import Sample

Adapter = Callable[..., list[Sample]]
_REGISTRY: dict[str, tuple[Adapter, str]] = {}


def register_dataset(name: str, description: str) -> Callable[[Adapter], Adapter]:
    """Decorator registering ``load(root, sheet, **options) -> list[Sample]`` under ``name``."""

    def wrap(fn: Adapter) -> Adapter:
        _REGISTRY[name] = (fn, description)
        return fn

    return wrap


def list_datasets() -> dict[str, str]:
    """Registered dataset names and one-line descriptions."""
    return {k: v[1] for k, v in sorted(_REGISTRY.items())}


def get_adapter(name: str) -> Adapter:
    """The adapter registered as ``name``.

    Raises
    ------
    MertoolError
        Unknown name (close names are suggested).
    """
    if name not in _REGISTRY:
        raise unknown_name("dataset", name, _REGISTRY)
    return _REGISTRY[name][0]
