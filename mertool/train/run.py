"""A whole cross-validated run: folds, resume, outputs (``mertool train``).

:func:`train_run` resolves the config once, splits the data, and has the unfinished folds
trained by :func:`mertool.train.tasks.train_tasks` (fold by fold or in stacked groups; in
this process, worker processes, one process per device, or on a dask cluster). Files go
where :class:`~mertool.train.rundir.RunDir` says. A killed run continues from the last
finished fold and the last epoch checkpoint (of the fold, or of its stacked group).
:func:`train_seeds` runs the protocol once per seed, each seed in its own run directory;
the seeds train together, and with stacking the replicas of all seeds of a fold group share
one stack (when the model draws no random numbers in training).

A run may be split into jobs (``folds`` / ``fold_index``, :func:`select_folds`): each trains
its folds into the shared run directory, holding each fold's lock while it trains, and the
job that finds every fold finished pools them into the run's outputs
(:func:`collect_run` does it on demand), exactly as one whole run writes them.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..device import resolve_device
from ..errors import MertoolError, UsageError
from ..log import logger
from ..models import count_parameters, create_model
from ..cluster import scheduler
from ..lock import wait_for_lock
from ..stages.stagefile import pipeline_of
from .augment import augment_for
from .config import TrainConfig, identity, legacy_identity, resolve_recipe
from .data import TrainData
from .devices import amp_mode, check_devices
from .fold import FoldResult, check_fold
from .loso import Fold, make_folds
from .metrics import compute_metrics
from .rundir import ORACLE, FoldDir, RunDir
from .stacked import seed_summary
from .tasks import Lane, fold_accuracy, load_features, train_tasks


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
        train_tasks(features, data, lanes, runs[0].cfg, device, progress)
    return done


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
        "inputs": [{"path": features, "abspath": str(Path(features).resolve()), "key": data.key}],
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
    data = data if data is not None else load_features(features, cfg)
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
    # the path as the jobs were given it (relative to their folder), else its absolute form (recorded since)
    found = [p for p in (source["path"], source.get("abspath")) if p and Path(p).is_file()]
    if not found:
        raise MertoolError(f"{run.path}: its features file {source['path']} (run.json) not found; collect from the "
                           "folder the jobs ran in")
    data, folds = _data_and_folds(found[0], cfg)
    if data.key != source["key"] or [f.name for f in folds] != info["folds"]:
        raise MertoolError(f"{found[0]}: changed since the run's jobs read it; its folds cannot be pooled")
    result = _pool(run, data, folds, cfg, info["params"], 0.0, resumed=len(folds))
    if result.missing:
        raise MertoolError(
            f"{run.path}: {len(result.missing)} of {len(folds)} folds unfinished: {', '.join(result.missing)}; "
            f"train them (mertool train ... --folds {','.join(result.missing)}) and collect again"
        )
    return result


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


def _precision(results: list[FoldResult]) -> str:
    """The arithmetic the folds trained in: ``fp32``, ``bf16``, ``fp16``, or ``mixed: bf16 (30 folds),
    fp32 (19 folds)`` (``amp: true`` is fp32 on CPU and bf16/fp16 on a GPU, so a run resumed or shared
    across kinds of device mixes them); ``unrecorded`` for folds of mertool before it was recorded."""
    counts = Counter(r.precision or "unrecorded" for r in results)
    if len(counts) == 1:
        return next(iter(counts))
    return "mixed: " + ", ".join(f"{p} ({n} folds)" for p, n in sorted(counts.items()))


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
            "precision": _precision(results),
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
    if metrics["precision"].startswith("mixed"):
        logger.warning(f"{run.path}: the folds trained in different precisions ({metrics['precision'].removeprefix('mixed: ')}; "
                       "folds.csv names each fold's device): --amp auto is fp32 on CPU and mixed precision on a GPU; "
                       "for one precision on every device train with --amp off (fp32) or --amp bf16")
    if cfg.oracle:
        metrics["oracle"] = _variant_metrics(run, data, folds, results, cfg, n_params, oracle=True)
        run.write_metrics(metrics["oracle"], oracle=True)
    histories = [r.history for r in results]
    plot_curves(histories, run.plot("curves"), f"{cfg.model} ({len(results)} folds)")
    plot_model_log(histories, run.plot("model_log"), f"{cfg.model} ({len(results)} folds)")  # e.g. SOA angle vs epoch
    if cfg.oracle:
        plot_curves(histories, run.plot("curves", oracle=True), f"{cfg.model} {ORACLE} test curves", oracle=True)
    header = ["fold", "n_train", "n_val", "n_test", "epochs_run", "chosen_epoch", "test_acc", "seconds", "device",
              "precision"]
    header += [f"{ORACLE}_epoch", f"{ORACLE}_test_acc"] if cfg.oracle else []
    rows = []
    for f, r in zip(folds, results):
        row = [f.name, len(f.train), len(f.val), len(f.test), r.epochs_run, r.best_epoch,
               f"{fold_accuracy(r, data.y):.4f}", f"{r.seconds:.2f}", r.device, r.precision]
        rows.append(row + ([r.oracle["epoch"], f"{fold_accuracy(r, data.y, oracle=True):.4f}"] if cfg.oracle else []))
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
    precisions = sorted({r.metrics.get("precision", "unrecorded") for r in runs})
    metrics["precision"] = precisions[0] if len(precisions) == 1 else "mixed over seeds: " + "; ".join(precisions)
    metrics["runs"] = [str(r.path) for r in runs]
    metrics["wall_seconds"] = float(sum(r.metrics["wall_seconds"] for r in runs))
    RunDir(root).write_metrics(metrics)
    return SeedsResult(root, metrics, runs)
