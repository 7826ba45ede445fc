"""The dataset-adapter registry: :func:`register_dataset`, lookup by name."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import unknown_name
from ..samples import Sample

Adapter = Callable[..., list[Sample]]
_REGISTRY: dict[str, tuple[Adapter, str, bool | None]] = {}


def register_dataset(name: str, description: str, *, pre_cropped: bool | None) -> Callable[[Adapter], Adapter]:
    """Decorator registering ``load(root, sheet, **options) -> list[Sample]`` under ``name``.

    ``pre_cropped`` declares whether the adapter's frames are the dataset's face crops
    (``mertool align`` then resizes them as they are, ``--crop none``) or raw video frames
    (``--crop similarity``); ``None`` for composites, whose samples keep their component's
    dataset name.
    """

    def wrap(fn: Adapter) -> Adapter:
        _REGISTRY[name] = (fn, description, pre_cropped)
        return fn

    return wrap


def is_pre_cropped(name: str) -> bool:
    """Whether the frames of dataset ``name`` are declared pre-cropped (False for names no
    adapter registered, e.g. ``synth`` or a manifest's own ``dataset`` values)."""
    return bool(_REGISTRY.get(name, (None, "", False))[2])


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
