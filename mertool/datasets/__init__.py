"""Dataset adapters, found by name (``mertool index --dataset NAME``).

An adapter is a function ``load(root, sheet, **options) -> list[Sample]`` registered
with :func:`register_dataset`. Adding a dataset is one new module listed in ``_MODULES``.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from pathlib import Path

from ..errors import MertoolError
from ..samples import Sample

Adapter = Callable[..., list[Sample]]
_REGISTRY: dict[str, tuple[Adapter, str]] = {}
_MODULES = ["manifest", "casme2", "samm", "mmew", "casme", "casme_sq", "casme3", "smic", "composites"]


def register_dataset(name: str, description: str) -> Callable[[Adapter], Adapter]:
    def wrap(fn: Adapter) -> Adapter:
        _REGISTRY[name] = (fn, description)
        return fn

    return wrap


def _load_modules() -> None:
    for mod in _MODULES:
        importlib.import_module(f"{__name__}.{mod}")


def list_datasets() -> dict[str, str]:
    """Registered dataset names and one-line descriptions."""
    _load_modules()
    return {k: v[1] for k, v in sorted(_REGISTRY.items())}


def get_adapter(name: str) -> Adapter:
    _load_modules()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise MertoolError(f"unknown dataset {name!r}{hint}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name][0]


def load_dataset(
    name: str,
    root: str | Path | None = None,
    sheet: str | Path | None = None,
    protocol: str | None = None,
    min_class_count: int = 0,
    **options,
) -> list[Sample]:
    """Index a dataset with the named adapter.

    ``protocol`` picks the class map (published datasets; see ``datasets/protocols.py``);
    ``min_class_count`` drops classes with fewer samples and reports them (DIANet: 10).
    """
    from .protocols import DEFAULT_PROTOCOL, filter_rare, get_protocol, log_dropped

    adapter = get_adapter(name)
    if protocol is not None:
        if name not in DEFAULT_PROTOCOL:
            raise MertoolError(f"--protocol applies to the published datasets, not {name!r} (its labels are used as they are)")
        options["protocol"] = protocol
    samples = adapter(root=Path(root) if root else None, sheet=Path(sheet) if sheet else None, **options)
    classes = get_protocol(protocol, name).classes if name in DEFAULT_PROTOCOL else ()
    if min_class_count or classes:
        samples, dropped = filter_rare(samples, min_class_count, classes)
        log_dropped(dropped, min_class_count)
    return samples
