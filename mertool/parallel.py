"""The one place where stages fan work out over samples.

Every stage calls :func:`parallel_map`; switching to a cluster (joblib's dask backend)
means changing the backend here only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from joblib import Parallel, delayed, parallel_config
from tqdm.auto import tqdm

BACKEND = os.environ.get("MERTOOL_JOBLIB_BACKEND", "loky")


def parallel_map(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    jobs: int = 1,
    desc: str = "",
    progress: bool = True,
    unit: str = "sample",
) -> Iterator[Any]:
    """Apply ``fn`` to each item, yielding results as they finish (any order).

    Parameters
    ----------
    fn : callable
        A picklable function of one item. It should return something that identifies the
        item (e.g. a ``(sample_id, result)`` tuple) since order is not kept with jobs > 1.
    items : iterable
        Work items.
    jobs : int
        Worker processes; 1 runs in this process (no pickling), -1 uses all cores.
    desc : str
        Progress-bar label.
    progress : bool
        Show a tqdm bar (stderr).
    unit : str
        What one item is, for the progress bar.
    """
    items = list(items)
    bar = tqdm(total=len(items), desc=desc, disable=not progress or not items, unit=unit)
    try:
        if jobs == 1 or len(items) <= 1:
            for item in items:
                yield fn(item)
                bar.update()
            return
        with parallel_config(backend=BACKEND, n_jobs=jobs, inner_max_num_threads=1):
            runner = Parallel(return_as="generator_unordered")
            for result in runner(delayed(fn)(item) for item in items):
                yield result
                bar.update()
    finally:
        bar.close()
