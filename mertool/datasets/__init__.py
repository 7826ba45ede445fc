"""Dataset adapters, found by name (``mertool index --dataset NAME``).

An adapter is a function ``load(root, sheet, **options) -> list[Sample]`` registered
with :func:`register_dataset`. The adapter modules are imported explicitly below, so
importing this package fills the registry; adding a dataset is one new module plus one
name in that import.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MertoolError
from ..samples import Sample
from ._registry import Adapter, get_adapter, list_datasets, register_dataset
from .protocols import DEFAULT_PROTOCOL, filter_rare, get_protocol, log_dropped

# The adapters: importing them registers them.
from . import casme, casme2, casme3, casme_sq, composites, longvideo, manifest, mmew, samm, smic  # noqa: F401

__all__ = ["Adapter", "get_adapter", "list_datasets", "load_dataset", "register_dataset"]


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
