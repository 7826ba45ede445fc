"""The one place where stages fan work out over samples.

Every stage calls :func:`parallel_map`. With ``MERTOOL_SCHEDULER`` set (``mertool
--scheduler ADDRESS|local[:N]``) the items run as tasks on a dask.distributed cluster
instead (:mod:`mertool.cluster`), whatever ``jobs`` says; otherwise ``jobs`` local
processes (joblib's loky) run them.

Worker processes (``jobs`` > 1) die with their parent: each watches its parent's pid and
ends itself within :data:`WATCH_SECONDS` once the parent is gone, however it ended
(``kill -9`` included), so no orphan keeps computing or writing into a run folder. They
run with one thread each (joblib's ``inner_max_num_threads=1`` for OpenMP, BLAS and
torch; OpenCV's own pool set to 1); the stages' results do not depend on thread counts,
so ``--jobs N`` gives the ``--jobs 1`` result bit for bit (tests/faults/test_fault_kill.py
checks it). Cluster workers outlive this process (they are the cluster's): its queued
tasks are dropped when it ends, and a stage's task still running writes its shard only
if the shard folder still belongs to the same run (:class:`~.stages.stagefile.ShardSink`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from joblib import Parallel, delayed, parallel_config

from . import cluster
from .log import progress_bar

#: How often a worker checks that its parent is alive.
WATCH_SECONDS = 0.2
_watching: int | None = None  # in a worker: the parent pid watched


def worker_setup(parent: int) -> None:
    """At a worker process's start: one OpenCV thread, and end when ``parent`` is gone.

    A daemon thread polls ``os.getppid()``: when the parent dies the worker is
    re-parented, and it exits at once with ``os._exit`` (no cleanup that could write).
    """
    global _watching
    if _watching == parent or os.getpid() == parent:
        return
    if os.getppid() != parent:
        os._exit(1)
    _watching = parent
    import cv2

    cv2.setNumThreads(1)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="mertool-watch-parent").start()


def _in_folder(folder: str, fn: Callable[[Any], Any], item: Any) -> Any:
    """``fn(item)`` in a worker, with the caller's working folder, so relative paths mean the same there."""
    if os.getcwd() != folder:
        os.chdir(folder)
    return fn(item)


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_SECONDS)
    os._exit(1)


def parallel_map(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    jobs: int = 1,
    desc: str = "",
    progress: bool = True,
    unit: str = "sample",
    lost: Callable[[Any, str], Any] | None = None,
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
        Local worker processes; 1 runs in this process (no pickling), -1 uses all cores.
        Not used on a cluster (its workers decide).
    desc : str
        Progress-bar label.
    progress : bool
        Show a tqdm bar (stderr).
    unit : str
        What one item is, for the progress bar.
    lost : callable, optional
        On a cluster: ``lost(item, reason)`` is yielded for an item whose task killed every
        worker it ran on; None stops with an error (as a crashed local worker does).
    """
    items = list(items)
    bar = progress_bar(total=len(items), desc=desc, progress=progress and bool(items), unit=unit)
    try:
        with contextlib.closing(_run(fn, items, jobs, lost)) as results:
            for result in results:
                yield result
                bar.update()
    finally:
        bar.close()


def _run(fn: Callable[[Any], Any], items: list[Any], jobs: int, lost: Callable[[Any, str], Any] | None) -> Iterator[Any]:
    """The results of ``fn`` over ``items``: on the cluster, in this process, or in ``jobs`` local workers."""
    spec = cluster.scheduler()
    if spec is not None and items:
        yield from cluster.cluster_map(fn, items, spec, lost)
    elif jobs == 1 or len(items) <= 1:
        yield from map(fn, items)
    else:
        # the watch starts as each worker starts (an initializer), not at its first task:
        # a worker that never got one must die with its parent too
        watch = {"initializer": worker_setup, "initargs": (os.getpid(),)}
        with parallel_config(backend="loky", n_jobs=jobs, inner_max_num_threads=1, **watch):
            here = os.getcwd()  # pooled workers outlive a call, and started in the cwd of their first caller
            yield from Parallel(return_as="generator_unordered")(delayed(_in_folder)(here, fn, item) for item in items)
