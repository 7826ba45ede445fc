"""Fold tasks spread over several devices (``mertool train --devices cuda:0,cuda:1``).

:func:`check_devices` refuses, before any work, a device list that cannot run: a malformed
name, a GPU that does not exist (or any ``cuda`` where torch sees none), a GPU named twice,
CPU and GPU mixed. :func:`device_map` runs the run's tasks (:class:`~mertool.train.tasks.FoldJob`
or :class:`~mertool.train.tasks.GroupJob`) in one worker process per device: each device's
process takes the next task from one shared queue as soon as it is free, so a faster device
takes more tasks, and each task carries the name of the device it runs on. A fold's numbers
do not depend on which device process trains it (it is seeded from the run's seed and its
position), so the run equals a one-device run up to the device's float rounding.

``cpu`` may be listed several times: one CPU worker process per entry, sharing the cores.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch

from ..device import resolve_device
from ..errors import MertoolError, UsageError
from ..log import progress_bar
from ..models import get_entry
from ..parallel import worker_setup


def check_devices(names: Sequence[str]) -> list[torch.device]:
    """The devices of ``--devices``, each checked to exist on this machine.

    Parameters
    ----------
    names : sequence of str
        ``cpu`` (may repeat: one worker process each), ``cuda`` or ``cuda:N`` (each GPU once).

    Raises
    ------
    UsageError
        An empty list, ``auto``, a malformed name, a GPU this machine does not have (or
        CUDA where torch sees none), a GPU named twice, or CPU and GPU mixed.
    """
    if not names:
        raise UsageError("--devices needs at least one device, e.g. cuda:0,cuda:1")
    devices = []
    for name in names:
        if not isinstance(name, str) or name.strip() == "auto":
            raise UsageError(f"--devices {name!r}: name each device (cpu, cuda or cuda:N), not auto")
        try:
            dev = resolve_device(name.strip())
        except MertoolError as exc:
            raise UsageError(f"--devices: {exc}") from None
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        devices.append(dev)
    twice = sorted({str(d) for d in devices if d.type != "cpu" and devices.count(d) > 1})
    if twice:
        raise UsageError(f"--devices names {', '.join(twice)} more than once (one worker process per GPU)")
    if len({d.type for d in devices}) > 1:
        raise UsageError(f"--devices mixes device types ({', '.join(names)}); list only GPUs or only cpu")
    return devices


def device_map(
    fn: Callable[[Any], Any], items: Sequence[Any], devices: Sequence[torch.device], *, threads: int = 1,
    desc: str = "", progress: bool = True, unit: str = "it",
) -> Iterator[Any]:
    """Apply ``fn`` to each item in one worker process per device, yielding results as they finish.

    Parameters
    ----------
    fn : callable
        A picklable function of one item (e.g. :func:`~mertool.train.tasks.run_fold_job`).
    items : sequence
        Dataclass items with ``device`` and ``threads`` fields; each is run with the name of
        the device whose process takes it, and ``threads`` torch threads.
    devices : sequence of torch.device
        One worker process each (from :func:`check_devices`). Workers are started with
        ``spawn`` (CUDA cannot be used in a forked process) and end with this process.
    threads : int
        Torch threads per worker process.
    desc, progress, unit
        The progress bar over items (:func:`mertool.log.progress_bar`).

    Raises
    ------
    Exception
        The first error a task raised (the other devices finish the task they hold, and
        take no new one).
    """
    devices = list(devices)[: len(items)]  # no idle worker processes
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for item in items:
        todo.put(item)
    done: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()
    context = multiprocessing.get_context("spawn")
    pools = [ProcessPoolExecutor(1, mp_context=context, initializer=worker_setup, initargs=(os.getpid(),))
             for _ in devices]

    def drive(pool: ProcessPoolExecutor, device: torch.device) -> None:
        while not stop.is_set():
            try:
                item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((True, pool.submit(fn, dataclasses.replace(item, device=str(device), threads=threads)).result()))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                stop.set()
                done.put((False, exc))
                return

    drivers = [threading.Thread(target=drive, args=(p, d), daemon=True) for p, d in zip(pools, devices)]
    bar = progress_bar(total=len(items), desc=desc, progress=progress and bool(items), unit=unit)
    try:
        for t in drivers:
            t.start()
        for _ in range(len(items)):
            ok, value = done.get()
            if not ok:
                raise value
            yield value
            bar.update()
    finally:
        stop.set()
        bar.close()
        for t in drivers:
            t.join()
        for pool in pools:
            pool.shutdown(cancel_futures=True)


def amp_mode(amp: bool | str, device: torch.device) -> tuple[bool, torch.dtype]:
    """Whether training on ``device`` runs under autocast, and in which dtype (config ``amp``).

    ``True``: on a GPU, bf16 where it supports it, else fp16 (with a gradient scaler);
    no autocast on CPU. ``"bf16"``: bf16 autocast on every device. ``False``: none.

    Raises
    ------
    UsageError
        ``"bf16"`` on a device without bfloat16 support.
    """
    if amp == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UsageError(f"amp bf16: {torch.cuda.get_device_name(device)} ({device}) does not support bfloat16; "
                             "use amp true (fp16 there) or false")
        if device.type not in ("cpu", "cuda"):
            raise UsageError(f"amp bf16: not supported on device {device}; use cpu or cuda, or amp false")
        return True, torch.bfloat16
    if amp and device.type == "cuda":
        return True, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return False, torch.bfloat16


def precision_name(use_amp: bool, dtype: torch.dtype) -> str:
    """The arithmetic a fold trained in, as its results record it: ``fp32``, ``bf16`` or ``fp16``
    (from :func:`amp_mode`)."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype] if use_amp else "fp32"


def device_label(device: torch.device) -> str:
    """``cpu``, or a GPU with its model (``cuda:0 NVIDIA H200``): where a fold trained, as its results record it."""
    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} {torch.cuda.get_device_name(index)}"


def channels_last_for(channels_last: bool | str, model: str, device: torch.device) -> bool:
    """Whether ``model`` trains on ``device`` with channels-last (NHWC) tensors (config ``channels_last``).

    ``True`` / ``False`` are used as given. ``"auto"``: channels-last on a GPU (measured
    faster there with bf16 autocast), and on CPU the model's registry preference
    (:attr:`~mertool.models._registry.ModelEntry.cpu_channels_last`, measured per model by
    ``benchmarks/train.py --layouts``).

    Raises
    ------
    UsageError
        A value other than ``"auto"``, True or False.
    MertoolError
        ``"auto"`` with an unknown model.
    """
    if isinstance(channels_last, bool):
        return channels_last
    if channels_last != "auto":
        raise UsageError(f"channels_last must be auto, true or false, got {channels_last!r}")
    return device.type == "cuda" or get_entry(model).cpu_channels_last
