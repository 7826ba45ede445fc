"""A whole cross-validated run: folds, resume, outputs (``mertool train``).

:func:`train_run` resolves the config once, splits the data, and hands each unfinished
fold to :func:`run_fold_job` as a :class:`FoldJob` (in this process, in worker processes
with ``jobs``, or in one worker process per device with ``devices``), or, with
``fold_batch``, in stacked groups
(:mod:`mertool.train.stacked`). Files go where :class:`~mertool.train.rundir.RunDir` says. A
killed run continues from the last finished fold and the last epoch checkpoint (of the fold,
or of its stacked group). :func:`train_seeds` runs the protocol once per seed, each seed
in its own run directory; the seeds train together, and with stacking the replicas of all
seeds of a fold group share one stack (when the model draws no random numbers in training).

A run may be split into jobs (``folds`` / ``fold_index``, :func:`select_folds`): each trains
its folds into the shared run directory, holding each fold's lock while it trains, and the
job that finds every fold finished pools them into the run's outputs
(:func:`collect_run` does it on demand), exactly as one whole run writes them.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..device import resolve_device
from ..errors import MertoolError, UsageError
from ..log import logger
from ..models import count_parameters, create_model, get_entry
from ..cluster import scheduler
from ..parallel import parallel_map
from ..stages.stagefile import pipeline_of, wait_for_lock
from .augment import augment_for
from .config import TrainConfig, identity, legacy_identity, resolve_recipe
from .data import TrainData, load_train_data
from .devices import amp_mode, check_devices, device_map
from .fold import FoldResult, FoldTrainer, check_fold
from .loso import Fold, make_folds
from .metrics import compute_metrics
from .rundir import ORACLE, FoldDir, RunDir
from .stacked import Replica, StackedTrainer, auto_fold_batch, draws_random, seed_summary, stack_refusal


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What :func:`train_run` produced.

    Attributes
    ----------
    path : Path
        The run directory.
    metrics : dict
        The honest metrics, as written to ``metrics.json``.
    oracle : dict or None
        In oracle mode, the ORACLE metrics (``metrics_ORACLE.json``; not an honest estimate).
    resumed : int
        Folds found finished in the directory (not trained again).
    missing : tuple of str
        Folds of the run still unfinished (other jobs' folds); the run is pooled, and
        ``metrics`` filled, only once there are none.
    """

    path: Path
    metrics: dict
    oracle: dict | None = None
    resumed: int = 0
    missing: tuple[str, ...] = ()

    def summary(self) -> str:
        """The run's scores for the console (plus a line per source dataset when there are several, and ORACLE's)."""
        if self.missing:
            return (f"{self.path}: {len(self.missing)} fold(s) still to train ({', '.join(self.missing)}); the job that "
                    f"finishes the last one pools the run (or: mertool train --collect {self.path})")
        m = self.metrics
        text = (
            f"{self.path}: UF1 {m['uf1']:.4f}  UAR {m['uar']:.4f}  acc {m['accuracy']:.4f}  "
            f"({m['n_folds']} folds, {m['n_samples']} samples)"
        )
        per_dataset = m.get("per_dataset", {})
        if len(per_dataset) > 1:
            for name, d in per_dataset.items():
                text += f"\n{self.path}:   {name}: UF1 {d['uf1']:.4f}  UAR {d['uar']:.4f}  ({d['n']} samples)"
        if self.oracle is not None:
            o = self.oracle
            text += f"\n{self.path}: ORACLE (best epoch on test, not honest): UF1 {o['uf1']:.4f}  UAR {o['uar']:.4f}"
        return text


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


def _load(features: str, cfg: TrainConfig) -> TrainData:
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
        data = _load(job.features, cfg)
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


def _stack_size(cfg: TrainConfig, device: torch.device, data: TrainData, lanes: list[Lane]) -> tuple[int, bool]:
    """Folds per stacked group (``cfg.fold_batch``, clamped; 0 = auto; 0 back = train fold by
    fold), and whether the seeds' replicas of a fold group share one stack.

    An explicit ``fold_batch`` > 1 stacks even a lone fold (a group of one, as the last
    group of a whole run may be), so a job training some of a run's groups computes what
    the whole run computes. Seeds share a stack only when the model draws no random
    numbers in training (:func:`~mertool.train.stacked.draws_random`): then each seed's
    results do not depend on the stack, else each seed is stacked on its own.
    """
    folds = len({i for lane in lanes for i in lane.pending})
    replicas = sum(len(lane.pending) for lane in lanes)
    if cfg.fold_batch == 1 or replicas < (2 if cfg.fold_batch == 0 else 1):
        return 0, False
    why = stack_refusal(cfg, device, len(data.classes))
    if why is not None:
        logger.info(f"{cfg.model}: training fold by fold, not stacked ({why})")
        return 0, False
    X = {k: torch.from_numpy(v) for k, v in data.inputs.items()}
    mix = len(lanes) > 1 and not draws_random(cfg, X, len(data.classes))
    if len(lanes) > 1:
        logger.info(f"{cfg.model}: " + ("the seeds' replicas of each fold group train in one stack" if mix else
                    "each seed stacked on its own (the model draws random numbers in training, e.g. dropout, "
                    "which depend on the stack)"))
    per_fold = len(lanes) if mix else 1
    if cfg.fold_batch == 0:
        fit = auto_fold_batch(cfg, X, len(data.classes), device, folds * per_fold)
        size = max(1, fit // per_fold) if fit > 1 else 0
        logger.info(f"{cfg.model}: fold batch auto = {size} (of {folds} folds to train)")
        size = size if size > 1 or mix else 0
    else:
        size = min(cfg.fold_batch, folds)
        if size < cfg.fold_batch:
            logger.info(f"{cfg.model}: fold batch {cfg.fold_batch} clamped to the {folds} folds to train")
    return size, mix


def _stack_groups(lanes: list[Lane], size: int, mix: bool) -> list[list[tuple[int, int]]]:
    """The tasks: each a list of ``(lane, fold index)`` replicas; the pending folds in groups of
    ``size`` consecutive ones (each replica alone when ``size`` is 0), all lanes' replicas of a
    group together when ``mix``, else each lane's apart."""
    if not size:
        return [[(lane, i)] for lane, run in enumerate(lanes) for i in run.pending]
    tasks = []
    for members in [list(range(len(lanes)))] if mix else [[lane] for lane in range(len(lanes))]:
        folds = sorted({i for lane in members for i in lanes[lane].pending})
        for s in range(0, len(folds), size):
            chunk = set(folds[s : s + size])
            tasks.append([(lane, i) for lane in members for i in lanes[lane].pending if i in chunk])
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


@contextmanager
def _holding(fold_dirs: list[FoldDir], chosen: list[int]) -> Iterator[list[int]]:
    """Lock the unfinished folds of ``chosen`` for this job; yields those still unfinished once locked.

    A fold another job holds stops this one with one error line naming it (or, with
    ``mertool --wait``, is waited for, and then found finished).
    """
    with ExitStack() as stack:
        for i in chosen:
            if not fold_dirs[i].result_file.exists():
                stack.callback(fold_dirs[i].lock(wait_for_lock()).release)
        yield [i for i in chosen if not fold_dirs[i].result_file.exists()]


@dataclasses.dataclass(frozen=True)
class _OpenRun:
    """A run directory prepared for training: its resolved config, folds, the folds this job trains, model size."""

    run: RunDir
    cfg: TrainConfig
    folds: list[Fold]
    chosen: list[int]
    n_params: int


def _train_lanes(
    runs: list[_OpenRun], features: str, data: TrainData, device: torch.device, progress: bool,
) -> list[int]:
    """Train the unfinished chosen folds of every run (one per seed) together; returns how many
    of each run's chosen folds were already finished."""
    lanes, done = [], []
    with ExitStack() as stack:
        for o in runs:
            fold_dirs = [o.run.fold(f.name) for f in o.folds]
            pending = stack.enter_context(_holding(fold_dirs, o.chosen))
            done.append(len(o.chosen) - len(pending))
            if done[-1] and pending:
                logger.info(f"{o.run.path}: resuming, {done[-1]} of {len(o.chosen)} folds already done")
            lanes.append(Lane(o.cfg.seed, o.folds, fold_dirs, pending))
        _train_pending(features, data, lanes, runs[0].cfg, device, progress)
    return done


def _train_pending(
    features: str, data: TrainData, lanes: list[Lane], cfg: TrainConfig, device: torch.device, progress: bool,
) -> None:
    """Train the lanes' pending folds: in stacked groups (:func:`_stack_groups`), or one by one;
    the tasks go to worker processes with ``jobs`` > 1, to one worker process per device with
    ``devices`` (:func:`~mertool.train.devices.device_map`), and to the cluster with ``--scheduler``."""
    size, mix = _stack_size(cfg, device, data, lanes)
    tasks = _stack_groups(lanes, size, mix)
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
            logger.info(f"fold {r.name}: {r.epochs_run} epochs, test acc {_fold_accuracy(r, data.y):.3f} ({how})")


def select_folds(
    folds: Sequence[Fold], names: Sequence[str] | None = None, part: tuple[int, int] | None = None, fold_batch: int = 1,
) -> list[int]:
    """The folds one job trains, as indices into ``folds`` (all of them when neither ``names`` nor ``part``).

    Parameters
    ----------
    folds : sequence of Fold
        The run's folds, in run order.
    names : sequence of str, optional
        Fold names (under LOSO, the test subjects), e.g. ``["sub01", "sub02"]``.
    part : (int, int), optional
        ``(i, n)``: the i-th (1-based) of n contiguous, near-equal slices of the run's
        folds (sizes differ by at most one, the first slices the larger). With
        ``fold_batch`` > 1 the slices are made of whole stacked groups of ``fold_batch``
        consecutive folds, the groups one whole run trains, so the split run computes
        what the whole run computes. A slice may be empty (more jobs than folds).
    fold_batch : int
        The run's ``fold_batch``.

    Raises
    ------
    UsageError
        Unknown fold names (listing the run's), both ``names`` and ``part``, or ``i`` not
        in 1..n.
    """
    if names is not None and part is not None:
        raise UsageError("give the folds to train once: --folds or --fold-index, not both")
    if names is not None:
        known = [f.name for f in folds]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise UsageError(f"unknown fold(s) {', '.join(unknown) or '(none given)'}; the run's folds are "
                               f"{', '.join(known)}")
        return [i for i, f in enumerate(folds) if f.name in set(names)]
    if part is None:
        return list(range(len(folds)))
    i, n = part
    if not 1 <= i <= n:
        raise UsageError(f"fold index {i}/{n}: needs 1 <= I <= N")
    size = max(fold_batch, 1)
    units = [list(range(s, min(s + size, len(folds)))) for s in range(0, len(folds), size)]
    share, extra = divmod(len(units), n)
    start = (i - 1) * share + min(i - 1, extra)
    return [f for unit in units[start : start + share + (i <= extra)] for f in unit]


def _run_info(features: str, cfg: TrainConfig, data: TrainData, folds: list[Fold], n_params: int, prev: dict) -> dict:
    """The provenance written to ``run.json`` (times carried over from the run being resumed)."""
    return {
        "identity": identity(cfg, data.key),
        "model": cfg.model,
        "params": n_params,
        "mertool_version": __version__,
        "torch_version": torch.__version__,
        "seed": cfg.seed,
        "inputs": [{"path": features, "key": data.key}],
        "pipeline": pipeline_of(features),
        "classes": data.classes,
        "dropped_classes": data.dropped,
        "n_samples": len(data),
        "n_subjects": len(set(data.subjects)),
        "folds": [f.name for f in folds],
        "oracle": cfg.oracle,
        "created": prev.get("created", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
        "wall_seconds": prev.get("wall_seconds", 0.0),
        "status": "running",
    }


def train_run(
    features: str | Path,
    out: str | Path | RunDir | None = None,
    config: TrainConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    folds: Sequence[str] | None = None,
    fold_index: tuple[int, int] | None = None,
) -> RunResult:
    """Cross-validate ``config.model`` on a features file and write the run directory.

    Parameters
    ----------
    features : path
        Stage file the model reads (e.g. ``flow.h5``).
    out : path or RunDir, optional
        Run directory [default: ``runs/<model>``, ``runs/<model>_ORACLE`` in oracle mode].
        If it holds a run of the same computation (config fields in
        :data:`~mertool.train.config.IDENTITY_KEYS`, and input), that run is resumed; a
        different one is refused unless ``overwrite``.
    config : TrainConfig
        Options; recipe fields left ``None`` come from the model's defaults. A model is required.
    overwrite : bool
        Replace a run directory holding a different run.
    progress : bool
        Show a progress bar over folds, and one over the epochs of each fold (or stacked
        group of folds) that trains in this process (``jobs`` 1, a GPU, or ``fold_batch``).
    folds, fold_index : optional
        Train only these folds (names), or only the ``(i, n)`` slice of the folds (see
        :func:`select_folds`): one job of a run split into several, which may run at the
        same time. The run is pooled when no fold is left unfinished.

    Returns
    -------
    RunResult
        The run directory and its metrics (``metrics.json``, plus the ORACLE ones in oracle
        mode); for a job that leaves other folds unfinished, no metrics and the ``missing`` folds.

    Raises
    ------
    MertoolError
        Bad options, features the model cannot read, a fold without training samples of
        some class, a run directory holding something else, ``overwrite`` on a split run,
        or a fold being trained by another job (unless ``mertool --wait``).
    """
    wall = time.perf_counter()
    cfg = resolve_recipe(config if config is not None else TrainConfig())
    device = _run_device(cfg)
    o, data = _open_run(str(features), out, cfg, overwrite, folds, fold_index)
    [resumed] = _train_lanes([o], str(features), data, device, progress)
    return _pool(o.run, data, o.folds, o.cfg, o.n_params, time.perf_counter() - wall, resumed)


def _open_run(
    features: str, out: str | Path | RunDir | None, cfg: TrainConfig, overwrite: bool, folds: Sequence[str] | None,
    fold_index: tuple[int, int] | None, data: TrainData | None = None,
) -> tuple[_OpenRun, TrainData]:
    """Prepare the run directory of ``cfg`` (identity checked, ``run.json`` and ``config.yaml``
    written) and choose this job's folds; ``data`` is read unless given (seeds share it)."""
    data, all_folds = _data_and_folds(features, cfg, data)
    chosen = select_folds(all_folds, folds, fold_index, cfg.fold_batch)
    if overwrite and (folds is not None or fold_index is not None):
        raise UsageError("--overwrite would delete the folds other jobs train into the run; clear the run folder "
                           "once before the jobs start, or choose another -o")
    run = RunDir.of(out) if out is not None else RunDir.for_model(cfg.model, cfg.oracle)
    n_params = count_parameters(create_model(cfg.model, num_classes=len(data.classes), **cfg.model_kwargs))
    with run.locked():  # jobs sharing the run check its identity and write run.json one at a time
        prev = run.prepare(identity(cfg, data.key), overwrite, also=(legacy_identity(cfg, data.key),))
        run.write_info(_run_info(features, cfg, data, all_folds, n_params, prev))
        run.write_config(cfg.to_dict())
    return _OpenRun(run, cfg, all_folds, chosen, n_params), data


def _run_device(cfg: TrainConfig) -> torch.device:
    """The device the run is planned for (``device``, or the first of ``devices``), once every
    device and the ``amp`` mode on it are checked, before any work.

    Raises
    ------
    UsageError
        A device that does not exist or cannot be listed (:func:`~mertool.train.devices.check_devices`),
        ``devices`` with ``--scheduler``, or ``amp`` a device does not support.
    """
    if cfg.devices and scheduler() is not None:
        raise UsageError("--devices places folds on this machine's devices; with --scheduler the cluster's workers "
                         "train them: give one of the two")
    devices = check_devices(cfg.devices) if cfg.devices else [resolve_device(cfg.device)]
    for device in devices:
        amp_mode(cfg.amp, device)
    return devices[0]


def _data_and_folds(features: str, cfg: TrainConfig, data: TrainData | None = None) -> tuple[TrainData, list[Fold]]:
    """The features as ``cfg.model`` reads them (unless ``data`` is given), and the run's folds
    (each checked to be trainable)."""
    data = data if data is not None else _load(features, cfg)
    augment_for(cfg.augment, data.encoding)  # refuse an augmentation the data's encoding does not allow, before any fold
    folds = make_folds(data.subjects, cfg.scheme, cfg.k, cfg.test_subjects, cfg.val_fraction, cfg.seed)
    for fold in folds:
        check_fold(fold, data.y, data.classes, data.subjects)
    return data, folds


def _pool(
    run: RunDir, data: TrainData, folds: list[Fold], cfg: TrainConfig, n_params: int, seconds: float, resumed: int = 0,
) -> RunResult:
    """Add a job's ``seconds`` to the run's time and, once every fold is finished, write the run's outputs.

    Holds the run's lock, so jobs finishing together pool one after the other (each
    writes the same outputs from the same finished folds).
    """
    with run.locked():
        info = run.info(fresh=True)
        info["wall_seconds"] = info.get("wall_seconds", 0.0) + seconds
        results = [run.fold(f.name).read_result() for f in folds]
        missing = tuple(f.name for f, r in zip(folds, results) if r is None)
        if missing:
            run.write_info(info)
            return RunResult(run.path, {}, None, resumed, missing)
        metrics = write_outputs(run, data, folds, results, cfg, n_params)
        info["status"] = "done"
        run.write_info(info)
        metrics["wall_seconds"] = info["wall_seconds"]
        oracle = metrics.pop("oracle", None)
        run.write_metrics(metrics)
    return RunResult(run.path, metrics, oracle, resumed)


def collect_run(path: str | Path) -> RunResult | SeedsResult:
    """Pool the finished folds of a run trained as separate jobs (``mertool train --collect``).

    Writes what one whole run writes (metrics, predictions, folds table, plots). A folder
    of a run over seeds (``seed_<s>/`` runs) is pooled seed by seed, then summarised.

    Raises
    ------
    MertoolError
        Not a run folder; the run's features file (as recorded in ``run.json``) missing or
        changed since; unfinished folds, named.
    """
    root = Path(path)
    if not RunDir(root).is_run and root.is_dir():
        seed_dirs = sorted((d for d in root.glob("seed_*") if RunDir(d).is_run), key=lambda d: RunDir(d).info()["seed"])
        if seed_dirs:
            runs = [_collect_one(RunDir(d)) for d in seed_dirs]
            return _seeds_result(root, [RunDir(d).info()["seed"] for d in seed_dirs], runs)
    return _collect_one(RunDir(root))


def _collect_one(run: RunDir) -> RunResult:
    info = run.info()
    cfg = resolve_recipe(TrainConfig(**run.config()))
    source = info["inputs"][0]
    if not Path(source["path"]).is_file():
        raise MertoolError(f"{run.path}: its features file {source['path']} (run.json) not found; collect from the "
                           "folder the jobs ran in")
    data, folds = _data_and_folds(source["path"], cfg)
    if data.key != source["key"] or [f.name for f in folds] != info["folds"]:
        raise MertoolError(f"{source['path']}: changed since the run's jobs read it; its folds cannot be pooled")
    result = _pool(run, data, folds, cfg, info["params"], 0.0, resumed=len(folds))
    if result.missing:
        raise MertoolError(
            f"{run.path}: {len(result.missing)} of {len(folds)} folds unfinished: {', '.join(result.missing)}; "
            f"train them (mertool train ... --folds {','.join(result.missing)}) and collect again"
        )
    return result


def _fold_accuracy(r: FoldResult, y: np.ndarray, oracle: bool = False) -> float:
    pred = np.asarray(r.oracle["probs"] if oracle else r.probs).argmax(1)
    return float((pred == y[np.asarray(r.test_index)]).mean())


def _predictions(data: TrainData, folds: list[Fold], results: list[FoldResult], oracle: bool) -> list[dict]:
    rows = []
    for fold, r in zip(folds, results):
        probs = np.asarray(r.oracle["probs"] if oracle else r.probs, dtype=np.float64)
        for i, p in zip(r.test_index, probs):
            row = {
                "sample_id": data.sample_ids[i],
                "subject": data.subjects[i],
                "dataset": data.datasets[i],
                "fold": fold.name,
                "label": data.classes[data.y[i]],
                "prediction": data.classes[int(p.argmax())],
            }
            row.update({f"p_{c}": f"{v:.6f}" for c, v in zip(data.classes, p)})
            rows.append(row)
    return rows


def _final_model_log(results: list[FoldResult]) -> dict[str, float]:
    from .report import STANDARD_LOG_KEYS

    last = [r.history[-1] for r in results if r.history]
    keys = sorted({k for row in last for k in row if k not in STANDARD_LOG_KEYS})
    return {k: float(np.mean([row[k] for row in last if k in row])) for k in keys}


def _selection(cfg: TrainConfig, oracle: bool) -> str:
    if oracle:
        return "ORACLE: best epoch on the test fold (not an honest estimate)"
    return "best validation loss (training subjects)" if cfg.early_stopping else "fixed epoch budget"


def _variant_metrics(
    run: RunDir, data: TrainData, folds: list[Fold], results: list[FoldResult], cfg: TrainConfig, n_params: int,
    oracle: bool,
) -> dict:
    """Predictions, metrics and confusion matrix of the honest results (or of the ORACLE ones)."""
    from .report import plot_confusion

    rows = _predictions(data, folds, results, oracle)
    run.write_predictions(rows, oracle)
    index = {c: i for i, c in enumerate(data.classes)}
    m = compute_metrics(
        [index[r["label"]] for r in rows], [index[r["prediction"]] for r in rows], [r["fold"] for r in rows], data.classes,
        datasets=[r["dataset"] for r in rows],
    )
    m.update(
        {
            "model": cfg.model,
            "params": n_params,
            "scheme": cfg.scheme,
            "epochs": cfg.epochs,
            "early_stopping": cfg.early_stopping,
            "selection": _selection(cfg, oracle),
            "train_seconds": float(sum(r.seconds for r in results)),
            "dropped_classes": data.dropped,
        }
    )
    final_log = _final_model_log(results)
    if final_log:  # e.g. learned SOA angles, mean over folds of each fold's last epoch
        m["model_log_final"] = final_log
    title = f"{cfg.model} {cfg.scheme}{' ' + ORACLE if oracle else ''}: UF1 {m['uf1']:.3f} UAR {m['uar']:.3f}"
    plot_confusion(np.asarray(m["confusion"]), data.classes, run.plot("confusion", oracle), title)
    return m


def write_outputs(
    run: RunDir, data: TrainData, folds: list[Fold], results: list[FoldResult], cfg: TrainConfig, n_params: int
) -> dict:
    """Write predictions, metrics, fold table and plots (and their ORACLE twins).

    Returns the honest metrics, with the ORACLE ones under ``"oracle"`` in oracle mode
    (``metrics_ORACLE.json`` is written here; ``metrics.json`` by the caller, once the
    run's wall time is known).
    """
    from .report import plot_curves, plot_model_log

    metrics = _variant_metrics(run, data, folds, results, cfg, n_params, oracle=False)
    if cfg.oracle:
        metrics["oracle"] = _variant_metrics(run, data, folds, results, cfg, n_params, oracle=True)
        run.write_metrics(metrics["oracle"], oracle=True)
    histories = [r.history for r in results]
    plot_curves(histories, run.plot("curves"), f"{cfg.model} ({len(results)} folds)")
    plot_model_log(histories, run.plot("model_log"), f"{cfg.model} ({len(results)} folds)")  # e.g. SOA angle vs epoch
    if cfg.oracle:
        plot_curves(histories, run.plot("curves", oracle=True), f"{cfg.model} {ORACLE} test curves", oracle=True)
    header = ["fold", "n_train", "n_val", "n_test", "epochs_run", "chosen_epoch", "test_acc", "seconds"]
    header += [f"{ORACLE}_epoch", f"{ORACLE}_test_acc"] if cfg.oracle else []
    rows = []
    for f, r in zip(folds, results):
        row = [f.name, len(f.train), len(f.val), len(f.test), r.epochs_run, r.best_epoch,
               f"{_fold_accuracy(r, data.y):.4f}", f"{r.seconds:.2f}"]
        rows.append(row + ([r.oracle["epoch"], f"{_fold_accuracy(r, data.y, oracle=True):.4f}"] if cfg.oracle else []))
    run.write_folds_table(header, rows)
    return metrics


@dataclasses.dataclass(frozen=True)
class SeedsResult:
    """What :func:`train_seeds` produced: the per-seed runs and the summary over seeds."""

    path: Path
    metrics: dict
    runs: list[RunResult]

    @property
    def missing(self) -> tuple[str, ...]:
        """Unfinished folds, as ``seed_<s>/<fold>`` (none once every seed's run is pooled)."""
        return tuple(f"{r.path.name}/{f}" for r in self.runs for f in r.missing)

    def summary(self) -> str:
        """Each metric as mean ± sd over seeds, then the per-seed values, for the console."""
        if self.missing:
            return "\n".join(r.summary() for r in self.runs)
        m = self.metrics
        text = f"{self.path}: {len(m['seeds'])} seeds ({', '.join(map(str, m['seeds']))}): " + "  ".join(
            f"{name} {m[k]:.4f} ± {m[k + '_sd']:.4f}" for k, name in (("uf1", "UF1"), ("uar", "UAR"), ("accuracy", "acc"))
        )
        for s, r in zip(m["seeds"], self.runs):
            text += f"\n{self.path}:   seed {s}: UF1 {r.metrics['uf1']:.4f}  UAR {r.metrics['uar']:.4f}"
        return text


def train_seeds(
    features: str | Path, out: str | Path | None, config: TrainConfig, seeds: list[int], *, overwrite: bool = False,
    progress: bool = True, folds: Sequence[str] | None = None, fold_index: tuple[int, int] | None = None,
) -> SeedsResult:
    """Run the protocol once per seed (``<out>/seed_<s>/``, each a run directory) and summarise over seeds.

    ``<out>/metrics.json`` holds each metric's mean and sample sd over seeds
    (:func:`~mertool.train.stacked.seed_summary`), the per-seed values, and the recipe
    fields of the runs. Finished seeds are not trained again. With ``folds`` or
    ``fold_index`` (see :func:`train_run`) each seed trains only those folds, and the
    summary is written once every seed's run is pooled.

    Raises
    ------
    MertoolError
        Fewer than one seed, or duplicate seeds; anything :func:`train_run` raises.
    """
    if not seeds or len(set(seeds)) != len(seeds):
        raise MertoolError(f"seeds must be distinct integers, got {seeds}")
    seeds = sorted(seeds)
    cfg = resolve_recipe(config)
    root = Path(out) if out is not None else RunDir.for_model(cfg.model, cfg.oracle).path
    if root.is_dir() and RunDir(root).is_run:
        raise MertoolError(f"{root}: holds a single-seed run; choose another -o for a run over seeds")
    wall = time.perf_counter()
    device = _run_device(cfg)
    opened, data = [], None
    for s in seeds:
        o, data = _open_run(str(features), root / f"seed_{s}", resolve_recipe(dataclasses.replace(config, seed=s)),
                            overwrite, folds, fold_index, data)
        opened.append(o)
    resumed = _train_lanes(opened, str(features), data, device, progress)
    seconds = (time.perf_counter() - wall) / len(seeds)  # the seeds trained together: each gets its share
    runs = [_pool(o.run, data, o.folds, o.cfg, o.n_params, seconds, done) for o, done in zip(opened, resumed)]
    return _seeds_result(root, seeds, runs)


def _seeds_result(root: Path, seeds: list[int], runs: list[RunResult]) -> SeedsResult:
    """The summary over seeds (written to ``<root>/metrics.json``), once no seed's run has folds missing."""
    if any(r.missing for r in runs):
        return SeedsResult(root, {}, runs)
    first = runs[0].metrics
    metrics = {k: first[k] for k in ("model", "params", "scheme", "epochs", "selection", "n_folds", "n_samples")}
    metrics.update(seed_summary({s: r.metrics for s, r in zip(seeds, runs)}))
    metrics["runs"] = [str(r.path) for r in runs]
    metrics["wall_seconds"] = float(sum(r.metrics["wall_seconds"] for r in runs))
    RunDir(root).write_metrics(metrics)
    return SeedsResult(root, metrics, runs)
