"""A whole cross-validated run: folds, run directory, resume, outputs.

Layout of ``runs/<name>/``::

    config.yaml         resolved TrainConfig (seed included)
    run.json            provenance: mertool/torch versions, input file key, classes,
                        dropped classes, folds, parameter count, identity hash, times
    folds/<fold>/       log.csv (per-epoch), checkpoint.pt (while unfinished),
                        final.pt (state_dict; load with weights_only=True), result.json
    folds.csv           one line per fold (sizes, epochs, chosen epoch, accuracy, seconds)
    predictions.csv     sample_id, subject, fold, label, prediction, p_<class>...
    metrics.json        see :func:`mertool.train.metrics.compute_metrics`
    curves.png, confusion.png
    *_ORACLE.*          only with ``oracle``: best-epoch-on-test results (not honest)

A killed run continues from the last finished fold and the last epoch checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from .. import __version__
from ..errors import MertoolError
from ..log import logger
from ..models import count_parameters, create_model, get_entry
from ..parallel import parallel_map
from .data import TrainData, load_train_data
from .engine import FoldResult, TrainConfig, check_fold, identity, resolve_device, resolve_recipe, train_fold
from ..stages.stagefile import pipeline_of
from .loso import Fold, make_folds
from .metrics import compute_metrics

ORACLE = "ORACLE"


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _prepare_run_dir(out: Path, ident: str, overwrite: bool) -> None:
    run_json = out / "run.json"
    if out.exists() and any(out.iterdir()):
        if not run_json.exists():
            raise MertoolError(f"{out}: exists and is not a mertool run directory; choose another -o")
        old = json.loads(run_json.read_text()).get("identity")
        if old != ident:
            if not overwrite:
                raise MertoolError(
                    f"{out}: run directory exists with a different config or input (identity {old}, now {ident}); "
                    "pass --overwrite to replace it, or choose another -o"
                )
            shutil.rmtree(out)
        elif overwrite:
            shutil.rmtree(out)
    try:
        (out / "folds").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MertoolError(f"{out}: cannot create run directory ({exc.strerror})") from None


_DATA: dict[tuple, TrainData] = {}  # per process: the features file is read once


def _worker_data(path: str, file_key: str, model: str, min_class_samples: int) -> TrainData:
    # Keyed by the stage file's key too: pooled workers outlive a run, files change.
    key = (path, file_key, model, min_class_samples)
    if key not in _DATA:
        _DATA.clear()
        data = load_train_data(path, get_entry(model).input, min_class_samples, model)
        if data.key != file_key:
            raise MertoolError(f"{path}: changed while training; re-run")
        _DATA[key] = data
    return _DATA[key]


def _fold_job(job: tuple) -> FoldResult:
    """Train one fold and publish its files (runs in-process or in a worker)."""
    features, file_key, cfg_dict, fold, index, fold_dir, device_name, threads = job
    if threads:
        torch.set_num_threads(threads)
    cfg = TrainConfig(**cfg_dict)
    data = _worker_data(features, file_key, cfg.model, cfg.min_class_samples)
    device = resolve_device(device_name)
    X = {k: torch.from_numpy(v).to(device) for k, v in data.inputs.items()}
    fold_dir = Path(fold_dir)
    fold_dir.mkdir(parents=True, exist_ok=True)
    result, state = train_fold(X, data.y, fold, index, cfg, len(data.classes), device, fold_dir)
    _write_fold_log(fold_dir / "log.csv", result.history)
    tmp = fold_dir / "final.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, fold_dir / "final.pt")
    _write_text(fold_dir / "result.json", json.dumps(dataclasses.asdict(result)))
    (fold_dir / "checkpoint.pt").unlink(missing_ok=True)
    return result


def _write_fold_log(path: Path, history: list[dict]) -> None:
    keys: list[str] = []
    for row in history:
        keys.extend(k for k in row if k not in keys)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(history)


def _load_result(fold_dir: Path) -> FoldResult | None:
    path = fold_dir / "result.json"
    if not path.exists():
        return None
    return FoldResult(**json.loads(path.read_text()))


def _fold_dir_name(fold: Fold) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in fold.name)


def train_run(
    features: str | Path,
    cfg: TrainConfig,
    out: str | Path,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Cross-validate ``cfg.model`` on a features file and write the run directory.

    Parameters
    ----------
    features : path
        Stage file the model reads (e.g. ``flow.h5``).
    cfg : TrainConfig
        Options; recipe fields left ``None`` come from the model's defaults.
    out : path
        Run directory. If it holds a run of the same config and input, that run is
        resumed; a different one is refused unless ``overwrite``.
    progress : bool
        Show a progress bar over folds.

    Returns
    -------
    dict
        The metrics (as written to metrics.json), plus ``oracle`` metrics in oracle mode.
    """
    wall = time.perf_counter()
    cfg = resolve_recipe(cfg)
    device = resolve_device(cfg.device)
    entry = get_entry(cfg.model)
    data = load_train_data(features, entry.input, cfg.min_class_samples, cfg.model)
    folds = make_folds(data.subjects, cfg.scheme, cfg.k, cfg.test_subjects, cfg.val_fraction, cfg.seed)
    for fold in folds:
        check_fold(fold, data.y, data.classes, data.subjects)
    out = Path(out)
    ident = identity(cfg, data.key)
    _prepare_run_dir(out, ident, overwrite)
    n_params = count_parameters(create_model(cfg.model, num_classes=len(data.classes), **cfg.model_kwargs))
    run_json = out / "run.json"
    prev = json.loads(run_json.read_text()) if run_json.exists() else {}
    info = {
        "identity": ident,
        "model": cfg.model,
        "params": n_params,
        "mertool_version": __version__,
        "torch_version": torch.__version__,
        "seed": cfg.seed,
        "inputs": [{"path": str(features), "key": data.key}],
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
    _write_text(run_json, json.dumps(info, indent=2))
    _write_text(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=True))

    fold_dirs = [out / "folds" / _fold_dir_name(f) for f in folds]
    results: dict[int, FoldResult] = {}
    for i, d in enumerate(fold_dirs):
        r = _load_result(d)
        if r is not None:
            results[i] = r
    pending = [i for i in range(len(folds)) if i not in results]
    if results and pending:
        logger.info(f"{out}: resuming, {len(results)} of {len(folds)} folds already done")
    jobs = cfg.jobs if cfg.jobs > 0 else (os.cpu_count() or 1)
    if device.type == "cuda":
        jobs = 1  # one GPU: folds run one after another on it
    jobs = min(jobs, max(len(pending), 1))
    threads = 1 if jobs > 1 else 0
    cfg_dict = cfg.to_dict()
    work = [(str(features), data.key, cfg_dict, folds[i], i, str(fold_dirs[i]), str(device), threads) for i in pending]
    _DATA.clear()
    if jobs == 1:  # folds run in this process: reuse the data already in memory
        _DATA[(str(features), data.key, cfg.model, cfg.min_class_samples)] = data
    names = {f.name: i for i, f in enumerate(folds)}
    for r in parallel_map(_fold_job, work, jobs=jobs, desc=f"train {cfg.model}", progress=progress, unit="fold"):
        results[names[r.name]] = r
        acc = _fold_accuracy(r, data.y)
        logger.info(f"fold {r.name}: {r.epochs_run} epochs, test acc {acc:.3f} ({r.seconds:.1f} s)")
    _DATA.clear()

    ordered = [results[i] for i in range(len(folds))]
    metrics = write_outputs(out, data, folds, ordered, cfg, n_params)
    info["wall_seconds"] = info["wall_seconds"] + (time.perf_counter() - wall)
    info["status"] = "done"
    _write_text(run_json, json.dumps(info, indent=2))
    metrics["wall_seconds"] = info["wall_seconds"]
    _write_text(out / "metrics.json", json.dumps(_without(metrics, "oracle"), indent=2))
    return metrics


def _without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


def _fold_accuracy(r: FoldResult, y: np.ndarray) -> float:
    pred = np.asarray(r.probs).argmax(1)
    return float((pred == y[np.asarray(r.test_index)]).mean())


def _predictions(data: TrainData, folds: list[Fold], results: list[FoldResult], oracle: bool) -> list[dict]:
    rows = []
    for fold, r in zip(folds, results):
        probs = np.asarray(r.oracle["probs"] if oracle else r.probs, dtype=np.float64)
        for i, p in zip(r.test_index, probs):
            row = {
                "sample_id": data.sample_ids[i],
                "subject": data.subjects[i],
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


def write_outputs(
    out: Path, data: TrainData, folds: list[Fold], results: list[FoldResult], cfg: TrainConfig, n_params: int
) -> dict:
    """Write predictions, metrics, fold table and plots (and their ORACLE twins)."""
    from .report import plot_confusion, plot_curves, plot_model_log

    index = {c: i for i, c in enumerate(data.classes)}
    variants = [("", False)] + ([(f"_{ORACLE}", True)] if cfg.oracle else [])
    all_metrics: dict = {}
    for suffix, oracle in variants:
        rows = _predictions(data, folds, results, oracle)
        with open(out / f"predictions{suffix}.csv.tmp", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        os.replace(out / f"predictions{suffix}.csv.tmp", out / f"predictions{suffix}.csv")
        m = compute_metrics(
            [index[r["label"]] for r in rows], [index[r["prediction"]] for r in rows], [r["fold"] for r in rows], data.classes
        )
        m.update(
            {
                "model": cfg.model,
                "params": n_params,
                "scheme": cfg.scheme,
                "epochs": cfg.epochs,
                "early_stopping": cfg.early_stopping,
                "selection": "ORACLE: best epoch on the test fold (not an honest estimate)"
                if oracle
                else ("best validation loss (training subjects)" if cfg.early_stopping else "fixed epoch budget"),
                "train_seconds": float(sum(r.seconds for r in results)),
                "dropped_classes": data.dropped,
            }
        )
        final_log = _final_model_log(results)
        if final_log:  # e.g. learned SOA angles, mean over folds of each fold's last epoch
            m["model_log_final"] = final_log
        title = f"{cfg.model} {cfg.scheme}{' ' + ORACLE if oracle else ''}: UF1 {m['uf1']:.3f} UAR {m['uar']:.3f}"
        plot_confusion(np.asarray(m["confusion"]), data.classes, out / f"confusion{suffix}.png", title)
        if oracle:
            _write_text(out / f"metrics{suffix}.json", json.dumps(m, indent=2))
            all_metrics["oracle"] = m
        else:
            all_metrics.update(m)
    histories = [r.history for r in results]
    plot_curves(histories, out / "curves.png", f"{cfg.model} ({len(results)} folds)")
    plot_model_log(histories, out / "model_log.png", f"{cfg.model} ({len(results)} folds)")  # e.g. SOA angle vs epoch
    if cfg.oracle:
        plot_curves(histories, out / f"curves_{ORACLE}.png", f"{cfg.model} {ORACLE} test curves", oracle=True)
    with open(out / "folds.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["fold", "n_train", "n_val", "n_test", "epochs_run", "chosen_epoch", "test_acc", "seconds"]
                   + ([f"{ORACLE}_epoch", f"{ORACLE}_test_acc"] if cfg.oracle else []))
        for f, r in zip(folds, results):
            extra = []
            if cfg.oracle:
                o = FoldResult(**{**dataclasses.asdict(r), "probs": r.oracle["probs"]})
                extra = [r.oracle["epoch"], f"{_fold_accuracy(o, data.y):.4f}"]
            w.writerow([f.name, len(f.train), len(f.val), len(f.test), r.epochs_run, r.best_epoch,
                        f"{_fold_accuracy(r, data.y):.4f}", f"{r.seconds:.2f}"] + extra)
    return all_metrics
