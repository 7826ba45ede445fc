"""How a run's unfinished folds are trained: as tasks (one fold, or a stacked group of folds).

:func:`train_tasks` turns the folds a run (or several seeds' runs: :class:`Lane`) still has
to train into :class:`FoldJob` / :class:`GroupJob` tasks and runs them in this process, in
``jobs`` worker processes, in one worker process per device (``devices``), or on a dask
cluster (``--scheduler``). A task carries its data when it runs in this process; a worker
reads the features file once per process. Each task publishes its folds' files itself
(:meth:`~mertool.train.rundir.FoldDir.publish`), so a killed run keeps every finished fold.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from ..cluster import scheduler
from ..device import resolve_device
from ..errors import MertoolError
from ..log import logger
from ..models import get_entry
from ..parallel import parallel_map
from .config import TrainConfig
from .data import TrainData, load_train_data
from .devices import check_devices, device_map
from .fold import FoldResult, FoldTrainer
from .loso import Fold
from .rundir import FoldDir
from .stacked import Replica, StackedTrainer, auto_fold_batch, stack_refusal


@dataclasses.dataclass(frozen=True)
class FoldJob:
    """One fold to train, with everything the process that trains it needs.

    Attributes
    ----------
    features, file_key : str
        The features file and its stage key (a worker checks it did not change).
    config : TrainConfig
        The resolved config.
    fold, index : Fold, int
        The split and its position (seeds the fold).
    fold_dir : FoldDir
        Where the fold's checkpoint and outputs go.
    device : str
        Torch device name.
    threads : int
        Torch threads in a worker process (0 = leave torch's default).
    data : TrainData or None
        The data when the job runs in the process that loaded it; None for worker
        processes, which load the features file themselves (once per process).
    progress : bool
        Show a bar over the fold's epochs (only for folds trained in this process).
    """

    features: str
    file_key: str
    config: TrainConfig
    fold: Fold
    index: int
    fold_dir: FoldDir
    device: str
    threads: int = 0
    data: TrainData | None = None
    progress: bool = False


@dataclasses.dataclass(frozen=True)
class Lane:
    """One seed's run in a training call: every fold of the run (so indices seed as in a whole
    run), one :class:`~mertool.train.rundir.FoldDir` per fold, and the indices still to train."""

    seed: int
    folds: list[Fold]
    fold_dirs: list[FoldDir]
    pending: list[int]


@dataclasses.dataclass(frozen=True)
class GroupJob:
    """Replicas to train as one stacked group (one task: in this process or a worker).

    Attributes as :class:`FoldJob`, with ``lanes`` (the seeds' runs) and ``group``, the
    replicas as ``(lane, fold index)`` pairs; ``config`` is the runs' shared config (each
    replica takes its lane's seed).
    """

    features: str
    file_key: str
    config: TrainConfig
    lanes: list[Lane]
    group: list[tuple[int, int]]
    device: str
    threads: int = 0
    data: TrainData | None = None
    progress: bool = False


def run_group_job(job: GroupJob) -> list[FoldResult]:
    """Train a group of replicas stacked, and publish each fold's files (in-process or in a worker)."""
    if job.threads:
        torch.set_num_threads(job.threads)
    data = _job_data(job)
    device = resolve_device(job.device)
    results = _train_groups(data, job.lanes, [job.group], job.config, device, job.progress)
    return [results[r] for r in job.group]


# Per worker process: the features file read once for every fold the process trains. Keyed
# by the file's stage key too, since pooled workers outlive a run and files change; it holds
# one entry. Only worker processes fill it (in-process jobs carry their data).
_WORKER_DATA: dict[tuple, TrainData] = {}


def load_features(features: str, cfg: TrainConfig) -> TrainData:
    """The features as ``cfg.model`` reads them (shapes and flow encoding checked)."""
    entry = get_entry(cfg.model)
    return load_train_data(features, entry.input, cfg.min_class_samples, cfg.model, entry.encoding)


def _job_data(job: FoldJob | GroupJob) -> TrainData:
    """The job's data: carried by an in-process job, read once per worker process otherwise."""
    if job.data is not None:
        return job.data
    cfg = job.config
    key = (job.features, job.file_key, cfg.model, cfg.min_class_samples)
    if key not in _WORKER_DATA:
        _WORKER_DATA.clear()
        data = load_features(job.features, cfg)
        if data.key != job.file_key:
            raise MertoolError(f"{job.features}: changed while training; re-run")
        _WORKER_DATA[key] = data
    return _WORKER_DATA[key]


def run_fold_job(job: FoldJob) -> FoldResult:
    """Train one fold and publish its files (runs in-process or in a worker)."""
    if job.threads:
        torch.set_num_threads(job.threads)
    data = _job_data(job)
    device = resolve_device(job.device)
    X = {k: torch.from_numpy(v).to(device) for k, v in data.inputs.items()}
    job.fold_dir.path.mkdir(parents=True, exist_ok=True)
    trainer = FoldTrainer(
        X, data.y, job.fold, job.index, job.config, len(data.classes), device, job.fold_dir.checkpoint, data.encoding,
        job.progress,
    )
    result, state = trainer.run()
    job.fold_dir.publish(result, state)
    return result


def _worker_count(cfg: TrainConfig, device: torch.device, pending: int) -> int:
    jobs = cfg.jobs if cfg.jobs > 0 else (os.cpu_count() or 1)
    if device.type == "cuda":
        jobs = 1  # one GPU: folds run one after another on it
    return min(jobs, max(pending, 1))


def stack_size(cfg: TrainConfig, device: torch.device, data: TrainData, lanes: list[Lane]) -> int:
    """Folds per stacked group (``cfg.fold_batch``, clamped; 0 = auto; 0 back = train fold by fold).

    An explicit ``fold_batch`` > 1 stacks even a lone fold (a group of one, as the last
    group of a whole run may be), so a job training some of a run's groups computes what
    the whole run computes. Every seed's replicas of a fold group share one stack (each
    replica's random streams are its own, :mod:`~mertool.train.stacked`).
    """
    folds = len({i for lane in lanes for i in lane.pending})
    replicas = sum(len(lane.pending) for lane in lanes)
    if cfg.fold_batch == 1 or replicas < (2 if cfg.fold_batch == 0 else 1):
        return 0
    X = {k: torch.from_numpy(v) for k, v in data.inputs.items()}
    why = stack_refusal(cfg, device, len(data.classes), X)
    if why is not None:
        logger.info(f"{cfg.model}: training fold by fold, not stacked ({why})")
        return 0
    if len(lanes) > 1:
        logger.info(f"{cfg.model}: the {len(lanes)} seeds' replicas of each fold group train in one stack")
    if device.type == "cpu":
        logger.info(f"{cfg.model}: on a CPU a stack trains slower than fold by fold (0.2-0.5x measured, "
                    "benchmarks/README.md); --jobs N spreads folds over cores instead")
    if cfg.fold_batch == 0:  # what fits every device a group may go to (--devices), or this one
        targets = check_devices(cfg.devices) if len(cfg.devices) > 1 else [device]
        fit = min(auto_fold_batch(cfg, X, len(data.classes), d, folds * len(lanes)) for d in targets)
        size = fit // len(lanes) if fit > 1 else 0
        logger.info(f"{cfg.model}: fold batch auto = {size} (of {folds} folds to train"
                    + (f", x {len(lanes)} seeds)" if len(lanes) > 1 else ")"))
        return size if size * len(lanes) > 1 else 0  # one replica alone is not a stack
    size = min(cfg.fold_batch, folds)
    if size < cfg.fold_batch:
        logger.info(f"{cfg.model}: fold batch {cfg.fold_batch} clamped to the {folds} folds to train")
    return size


def _stack_groups(lanes: list[Lane], size: int) -> list[list[tuple[int, int]]]:
    """The tasks: each a list of ``(lane, fold index)`` replicas; the pending folds in groups of
    ``size`` consecutive ones, every lane's replicas of a group together (each replica alone when
    ``size`` is 0)."""
    if not size:
        return [[(lane, i)] for lane, run in enumerate(lanes) for i in run.pending]
    folds = sorted({i for lane in lanes for i in lane.pending})
    tasks = []
    for s in range(0, len(folds), size):
        chunk = set(folds[s : s + size])
        tasks.append([(lane, i) for lane in range(len(lanes)) for i in lanes[lane].pending if i in chunk])
    return tasks


def _train_stacked(
    data: TrainData, lanes: list[Lane], group: list[tuple[int, int]], cfg: TrainConfig, device: torch.device,
    progress: bool = False,
) -> list[FoldResult]:
    """Train the replicas ``group`` (``(lane, fold index)`` pairs) as one stack and publish each fold's files."""
    X = {k: torch.from_numpy(v).to(device) for k, v in data.inputs.items()}
    for lane, i in group:
        lanes[lane].fold_dirs[i].path.mkdir(parents=True, exist_ok=True)
    replicas = [Replica(lanes[lane].folds[i], i, lanes[lane].seed) for lane, i in group]
    head = lanes[group[0][0]].fold_dirs[group[0][1]]
    trainer = StackedTrainer(X, data.y, replicas, cfg, len(data.classes), device, head.stack_checkpoint,
                             data.encoding, progress)
    out = trainer.run()
    for (lane, i), (result, state) in sorted(zip(group, out), key=lambda x: x[0] == group[0]):  # the head last
        lanes[lane].fold_dirs[i].publish(result, state)
    return [r for r, _ in out]


def _train_groups(
    data: TrainData, lanes: list[Lane], groups: list[list[tuple[int, int]]], cfg: TrainConfig, device: torch.device,
    progress: bool = False,
) -> dict[tuple[int, int], FoldResult]:
    """Train each stacked group of ``groups``; a group out of memory is halved (over its replicas) and retried."""
    queue, results = list(groups), {}
    while queue:
        group = queue.pop(0)
        try:
            out = _train_stacked(data, lanes, group, cfg, device, progress)
        except torch.OutOfMemoryError:
            if len(group) == 1:
                raise
            half = len(group) // 2
            what = "folds" if len({lane for lane, _ in group}) == 1 else "replicas"
            logger.warning(f"{cfg.model}: out of memory with {len(group)} stacked {what}; retrying as {half} + "
                           f"{len(group) - half} (finished folds are kept)")
            queue[:0] = [group[:half], group[half:]]
            continue
        results.update(zip(group, out))
    return results


def train_tasks(
    features: str, data: TrainData, lanes: list[Lane], cfg: TrainConfig, device: torch.device, progress: bool,
) -> None:
    """Train the lanes' pending folds: in stacked groups (:func:`_stack_groups`), or one by one;
    the tasks go to worker processes with ``jobs`` > 1, to one worker process per device with
    ``devices`` (:func:`~mertool.train.devices.device_map`), and to the cluster with ``--scheduler``."""
    size = stack_size(cfg, device, data, lanes)
    tasks = _stack_groups(lanes, size)
    devices = check_devices(cfg.devices) if len(cfg.devices) > 1 else []
    jobs = len(devices) or _worker_count(cfg, device, len(tasks))
    local = jobs == 1 and scheduler() is None
    # in this process: reuse the data in memory, and an epoch bar (parallel workers' bars would interleave)
    shared = {"device": str(device), "threads": 0 if local else 1, "data": data if local else None,
              "progress": progress and local}
    if size:
        work = [GroupJob(features, data.key, cfg, lanes, group, **shared) for group in tasks]
        run, unit = run_group_job, "group"
    else:
        work = [FoldJob(features, data.key, dataclasses.replace(cfg, seed=lanes[lane].seed), lanes[lane].folds[i], i,
                        lanes[lane].fold_dirs[i], **shared) for [(lane, i)] in tasks]
        run, unit = run_fold_job, "fold"
    show = {"desc": f"train {cfg.model}", "progress": progress, "unit": unit}
    if devices:  # one worker process per device, each taking the next task when free
        threads = max(1, (os.cpu_count() or 1) // len(devices))
        results = device_map(run, work, devices, threads=threads, **show)
    else:
        results = parallel_map(run, work, jobs=jobs, **show)
    for out in results:
        for r in out if size else [out]:
            how = "stacked" if size else f"{r.seconds:.1f} s"
            logger.info(f"fold {r.name}: {r.epochs_run} epochs, test acc {fold_accuracy(r, data.y):.3f} ({how})")


def fold_accuracy(r: FoldResult, y: np.ndarray, oracle: bool = False) -> float:
    pred = np.asarray(r.oracle["probs"] if oracle else r.probs).argmax(1)
    return float((pred == y[np.asarray(r.test_index)]).mean())
