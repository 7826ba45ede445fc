"""Per-sample work on a dask.distributed cluster (``mertool --scheduler``).

The environment variable :data:`SCHEDULER_ENV` (``MERTOOL_SCHEDULER``, set by the global
option ``mertool --scheduler``) selects where :func:`mertool.parallel.parallel_map` runs
its items:

- ``tcp://HOST:PORT`` (or ``HOST:PORT``): a running dask scheduler (``dask scheduler``
  plus ``dask worker`` processes, or any deployment: dask-jobqueue, Kubernetes, ...);
- a path to an existing scheduler file (``dask scheduler --scheduler-file FILE``);
- ``local`` or ``local:N``: a LocalCluster of N single-threaded worker processes
  (default: one per core) started for the call and closed after it.

Each item is one dask task (``client.submit`` with ``retries``, a bounded number in
flight): results come back as they finish; a task on a worker that dies is run again on
another (dask's own rescheduling); an item that keeps raising raises in this process like
it does locally (stages turn sample errors into that sample's failure before they leave
the worker, and report a sample whose task kills every worker it is given to as failed;
the stages' workers write their results into the output's shard folder themselves, see
:class:`mertool.stages.stagefile.ShardSink`). Workers use one
thread for OpenCV, and dask's nannies start them with ``OMP_NUM_THREADS=1`` (and MKL,
OpenBLAS) so torch and BLAS are single-threaded too: results are bit-identical to
``--jobs 1``.

Workers must see the same files under the same paths as this process (a shared file
system; give absolute paths, or start the workers in the same folder).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

from .errors import MertoolError

#: Where parallel work runs: a scheduler address or file, ``local`` or ``local:N``; unset = this machine.
SCHEDULER_ENV = "MERTOOL_SCHEDULER"
#: How long to wait for a scheduler before giving up (an unreachable address fails fast).
CONNECT_TIMEOUT = "5s"
#: Extra runs of a task that raised (a worker lost mid-task is rescheduled by dask itself,
#: up to ``distributed.scheduler.allowed-failures`` times).
RETRIES = 1
#: Tasks in flight at least (more with many workers: see :func:`_window`).
MIN_WINDOW = 64
_in_worker = False  # set in a worker process by its first task


def scheduler() -> str | None:
    """The cluster to use (``MERTOOL_SCHEDULER``), or None to run on this machine.

    Inside a cluster worker it is always None: work a task fans out runs in that task.
    """
    value = os.environ.get(SCHEDULER_ENV, "").strip()
    return value if value and not _in_worker else None


def local_workers(spec: str) -> int | None:
    """N for ``local`` / ``local:N`` (``local`` = one worker per core); None for an address.

    Raises
    ------
    MertoolError
        ``local:`` followed by something other than a positive whole number.
    """
    if spec != "local" and not spec.startswith("local:"):
        return None
    count = spec.partition(":")[2]
    if not count:
        return os.cpu_count() or 1
    if not re.fullmatch(r"[1-9][0-9]*", count):
        raise MertoolError(f"{SCHEDULER_ENV}={spec}: expected local, local:N (N workers >= 1) or a scheduler address")
    return int(count)


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise MertoolError(
            f"{SCHEDULER_ENV} is set but dask.distributed is not installed: pip install \"mertool[dask]\""
        ) from None
    return distributed


@contextlib.contextmanager
def client(spec: str) -> Iterator[Any]:
    """A ``distributed.Client`` for ``spec`` (see the module docstring), closed on exit.

    Raises
    ------
    MertoolError
        dask.distributed is not installed, or no scheduler answers at ``spec`` within
        :data:`CONNECT_TIMEOUT`.
    """
    distributed = _distributed()
    workers = local_workers(spec)
    with contextlib.ExitStack() as stack:
        if workers is not None:
            cluster = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                    silence_logs=logging.ERROR,
                )
            )
            target: dict[str, Any] = {"address": cluster}
        elif Path(spec).is_file():
            target = {"scheduler_file": spec}
        else:
            target = {"address": spec}
        try:
            handle = distributed.Client(**target, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise MertoolError(f"{spec}: cannot reach the dask scheduler ({exc or type(exc).__name__})") from None
        yield stack.enter_context(handle)


def cluster_map(
    fn: Callable[[Any], Any], items: list[Any], spec: str, lost: Callable[[Any, str], Any] | None = None
) -> Iterator[Any]:
    """``fn`` of each item as a task on the cluster ``spec``, yielded as each finishes.

    At most :func:`_window` tasks are submitted at a time (a new one as each finishes), so
    the scheduler holds a bounded part of the work, however many items there are. Tasks
    still queued are cancelled when the caller stops early (or raises).

    Parameters
    ----------
    lost : callable, optional
        ``lost(item, reason)`` is yielded for an item whose task killed every worker it
        ran on (a crash in native code, out of memory); None: stop with an error.

    Raises
    ------
    MertoolError
        The cluster cannot be reached, a task killed every worker it was given to (and
        ``lost`` is None), or the scheduler went away mid-run.
    Exception
        Whatever ``fn`` raised, after its retries.
    """
    distributed = _distributed()
    todo, item_of = iter(items), {}
    with client(spec) as handle:

        def submit(item: Any) -> Any:
            future = handle.submit(_task, fn, item, retries=RETRIES, pure=False)
            item_of[future.key] = item
            return future

        running = distributed.as_completed([submit(item) for item in islice(todo, _window(handle))], loop=handle.loop)
        try:
            for future in running:
                item = item_of.pop(future.key)
                result = _result(future, spec, distributed, None if lost is None else partial(lost, item))
                future.release()
                for more in islice(todo, 1):
                    running.add(submit(more))
                yield result
        finally:
            handle.cancel(list(running.futures))


def _window(handle: Any) -> int:
    """Tasks in flight: four per worker thread (at least :data:`MIN_WINDOW`, for workers still joining)."""
    return max(MIN_WINDOW, 4 * sum(handle.nthreads().values()))


def _result(future: Any, spec: str, distributed: Any, lost: Callable[[str], Any] | None) -> Any:
    try:
        return future.result()
    except distributed.KilledWorker:
        why = "its task killed every dask worker it ran on (a crash, or out of memory; see the workers' logs)"
        if lost is not None:
            return lost(why)
        raise MertoolError(f"{spec}: {why}") from None
    except CancelledError as exc:
        raise MertoolError(f"{spec}: the dask scheduler cancelled the work ({exc}); is it still running?") from None


def _task(fn: Callable[[Any], Any], item: Any) -> Any:
    """Runs in a worker: one OpenCV thread, no nested cluster, then ``fn(item)``."""
    global _in_worker
    if not _in_worker:
        import cv2

        cv2.setNumThreads(1)
        _in_worker = True
    return fn(item)
