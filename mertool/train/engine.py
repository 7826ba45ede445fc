"""The training engine: honest subject-independent cross-validation of a registered model.

Each fold trains a fresh model on its training subjects for a fixed epoch budget, then
predicts its test subjects once. Optional early stopping watches a validation split of
*training* subjects only. An opt-in ``oracle`` mode additionally records, per fold, the
epoch that scored best on the test subject (what many papers report); those outputs carry
ORACLE in their names and never replace the honest ones.

A fold's randomness (initialisation, shuffling, dropout, augmentation) is seeded from
``(seed, fold index)``, so a fold gives the same result whether it runs alone, in a
worker process, or resumed from an epoch checkpoint.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import StageConfig
from ..errors import MertoolError
from ..log import logger
from ..models import create_model, get_entry
from .augment import get_augment
from .loso import SCHEMES, Fold

# Engine defaults, used where neither the model's registry defaults nor the user set a value.
GLOBAL_DEFAULTS: dict[str, Any] = {
    "epochs": 50,
    "batch_size": 32,
    "lr": 1e-3,
    "optimizer": "adam",
    "weight_decay": 0.0,
    "momentum": 0.9,
    "lr_step": 0,
    "lr_gamma": 0.1,
    "augment": "none",
}
OPTIMIZERS = ("adam", "adamw", "sgd")
# Execution settings: they do not change what is computed, so a run may resume under others.
EXECUTION_KEYS = ("device", "jobs", "checkpoint_every")


@dataclasses.dataclass
class TrainConfig(StageConfig):
    """Options of ``mertool train`` (YAML ``--config`` keys use these names).

    Recipe fields left ``None`` take the model's registry ``defaults``, then
    :data:`GLOBAL_DEFAULTS`; the run records the resolved values.
    """

    model: str = ""
    scheme: str = "loso"  # loso | kfold | fixed
    k: int = 5  # groups for kfold
    test_subjects: list = dataclasses.field(default_factory=list)  # for fixed
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None  # adam | adamw | sgd
    weight_decay: float | None = None
    momentum: float | None = None  # sgd only
    lr_step: int | None = None  # multiply lr by lr_gamma every lr_step epochs (0 = constant)
    lr_gamma: float | None = None
    augment: str | None = None  # see mertool.train.augment ("none", "hflip", "flow_hflip")
    accumulate: int = 1  # optimizer step every N batches (gradient accumulation)
    class_balanced: bool = False  # inverse-frequency class weights from each fold's training labels
    early_stopping: bool = False  # stop on validation loss (validation = training subjects only)
    val_fraction: float = 0.0  # share of each fold's training subjects held out (0.2 if early_stopping)
    patience: int = 20
    oracle: bool = False  # ALSO record best-epoch-on-test results, named *_ORACLE (papers' practice)
    min_class_samples: int = 0  # drop classes with fewer samples
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision on GPU
    channels_last: bool = True  # NHWC convolutions (~1.5x faster training of small CNNs on CPU)
    jobs: int = 1  # folds trained in parallel worker processes (CPU)
    checkpoint_every: int = 5  # epochs between resumable checkpoints
    weights: str | None = None  # initial weights (state_dict) for every fold
    model_kwargs: dict = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        if not self.model:
            raise MertoolError("no model given (--model NAME; see `mertool models`)")
        if self.scheme not in SCHEMES:
            raise MertoolError(f"unknown scheme {self.scheme!r}; choose from {', '.join(SCHEMES)}")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise MertoolError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise MertoolError(f"{name} must be a positive integer, got {v!r}")
        if self.lr is not None and not self.lr > 0:
            raise MertoolError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.val_fraction < 1:
            raise MertoolError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.oracle and self.early_stopping:
            raise MertoolError("oracle and early_stopping exclude each other (oracle reports the fixed budget's epochs)")
        if self.jobs == 0 or self.jobs < -1:
            raise MertoolError(f"jobs must be >= 1 or -1 (all cores), got {self.jobs}")
        if not isinstance(self.accumulate, int) or self.accumulate < 1:
            raise MertoolError(f"accumulate must be a positive integer, got {self.accumulate!r}")
        if self.patience < 1 or self.checkpoint_every < 1:
            raise MertoolError("patience and checkpoint_every must be >= 1")


def resolve_recipe(cfg: TrainConfig) -> TrainConfig:
    """Fill unset recipe fields from the model's registry defaults, then the engine's.

    Raises
    ------
    MertoolError
        Unknown model (with the closest names) or unknown augmentation.
    """
    entry = get_entry(cfg.model)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {}
    for name, default in GLOBAL_DEFAULTS.items():
        if getattr(cfg, name) is None:
            values[name] = entry.defaults.get(name, default)
    blank = TrainConfig(model=cfg.model)
    for name, default in entry.defaults.items():  # other recipe keys a model may set
        if name not in fields:
            logger.warning(f"model {cfg.model!r}: default {name!r} is not an engine option; ignored")
        elif name not in GLOBAL_DEFAULTS and getattr(cfg, name) == getattr(blank, name):
            values[name] = default
    out = dataclasses.replace(cfg, **values)
    if out.early_stopping and out.val_fraction == 0:
        out = dataclasses.replace(out, val_fraction=0.2)
    if callable(out.augment):
        raise MertoolError(f"model {cfg.model!r}: defaults['augment'] must name a registered augmentation")
    get_augment(out.augment)
    out.validate()
    return out


def identity(cfg: TrainConfig, input_key: str) -> str:
    """What makes two runs the same computation (execution settings excluded)."""
    from ..config import config_hash

    params = {k: v for k, v in cfg.to_dict().items() if k not in EXECUTION_KEYS}
    return config_hash({"config": params, "input": input_key})


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; a CUDA request without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
            raise MertoolError(
                f"device {name!r} asked, but no CUDA device is available (torch {torch.__version__}, {build}); "
                "use --device cpu or --device auto"
            )
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise MertoolError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
        return dev
    if name == "cpu":
        return torch.device("cpu")
    raise MertoolError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")


def fold_seed(seed: int, fold_index: int) -> int:
    return int(np.random.SeedSequence([seed, fold_index]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if torch.cuda.is_available():
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


@dataclasses.dataclass
class FoldResult:
    """What one fold leaves behind (also stored as the fold's result.json)."""

    name: str
    test_index: list[int]
    probs: list[list[float]]  # test samples x classes, from the final (honest) model
    history: list[dict]
    epochs_run: int
    best_epoch: int  # epoch of the returned weights (last, or best validation loss)
    seconds: float
    oracle: dict | None = None  # {"epoch": e, "probs": ...}: best epoch ON THE TEST FOLD


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    perm = torch.randperm(n, generator=generator)
    chunks = list(perm.split(batch_size))
    # A batch of one breaks BatchNorm in training mode: fold it into the previous batch.
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2] = torch.cat([chunks[-2], chunks[-1]])
        chunks.pop()
    return chunks


def _gather(X: dict[str, torch.Tensor], idx: torch.Tensor, fmt: torch.memory_format) -> dict[str, torch.Tensor]:
    """The rows ``idx`` of every input; image batches (4-d) in memory format ``fmt``."""
    out = {}
    for k, v in X.items():
        b = v[idx.to(v.device)]
        out[k] = b.contiguous(memory_format=fmt) if b.ndim == 4 else b
    return out


def _forward(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    out = model(**batch)
    if isinstance(out, (tuple, list)):
        return out[0], out[1]
    return out, None


@torch.no_grad()
def _predict(
    model: nn.Module,
    X: dict[str, torch.Tensor],
    idx: torch.Tensor,
    batch_size: int,
    autocast: Callable,
    fmt: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """Logits (float32, on CPU) of samples ``idx`` in eval mode."""
    model.eval()
    outs = []
    for chunk in idx.split(max(batch_size, 1)):
        with autocast():
            logits, _ = _forward(model, _gather(X, chunk, fmt))
        outs.append(logits.float().cpu())
    return torch.cat(outs) if outs else torch.empty(0)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def class_weights(y_train: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency weights ``n / (K * n_c)`` from training labels (mean weight per sample 1)."""
    counts = np.bincount(y_train, minlength=num_classes).astype(np.float64)
    if (counts == 0).any():
        raise ValueError("every class needs a training sample")
    return (len(y_train) / (num_classes * counts)).astype(np.float32)


def check_fold(fold: Fold, y: np.ndarray, classes: list[str], subjects: list[str]) -> None:
    """Refuse folds the model cannot learn from (a class without training samples)."""
    train_classes = set(y[fold.train].tolist())
    missing = [classes[c] for c in sorted(set(range(len(classes))) - train_classes)]
    if missing:
        where = {c: sorted({subjects[i] for i in np.flatnonzero(y == classes.index(c))}) for c in missing}
        detail = "; ".join(f"{c!r} only in subject(s) {', '.join(s)}" for c, s in where.items())
        raise MertoolError(
            f"fold {fold.name}: class(es) {', '.join(map(repr, missing))} have no training samples ({detail}); "
            "drop rare classes with --min-class-samples N or use another split"
        )
    if len(fold.train) < 2:
        raise MertoolError(f"fold {fold.name}: needs at least 2 training samples, has {len(fold.train)}")


def train_fold(
    X: dict[str, torch.Tensor],
    y: np.ndarray,
    fold: Fold,
    fold_index: int,
    cfg: TrainConfig,
    num_classes: int,
    device: torch.device,
    fold_dir: Path | None = None,
) -> tuple[FoldResult, dict[str, torch.Tensor]]:
    """Train one fold and predict its test samples.

    Parameters
    ----------
    X : dict of str -> Tensor
        All samples' inputs (model keyword -> N x ...), on ``device``.
    y : ndarray
        All samples' class indices. Only ``y[fold.train]`` and ``y[fold.val]`` are read,
        except in oracle mode, which also scores the test fold per epoch for its ORACLE
        outputs (the honest outputs never depend on test labels).
    fold, fold_index : Fold, int
        The split, and its position (seeds the fold).
    cfg : TrainConfig
        A resolved config (:func:`resolve_recipe`).
    num_classes : int
    device : torch.device
    fold_dir : path, optional
        Where epoch checkpoints go (resume after a kill) and the per-fold log is written.

    Returns
    -------
    FoldResult, dict
        The result and the final weights (state_dict on CPU).
    """
    start = time.perf_counter()
    seed_everything(fold_seed(cfg.seed, fold_index))
    gen = torch.Generator().manual_seed(fold_seed(cfg.seed, fold_index) + 1)
    model = create_model(cfg.model, num_classes=num_classes, weights=cfg.weights, **cfg.model_kwargs).to(device)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    # Hook: a model may split its parameters into groups (e.g. own lr / no decay for some).
    groups = model.param_groups(cfg.lr, cfg.weight_decay) if hasattr(model, "param_groups") else model.parameters()
    optimizer = _make_optimizer(cfg, groups)
    scheduler = (
        torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step, gamma=cfg.lr_gamma) if cfg.lr_step else None
    )
    augment = get_augment(cfg.augment)
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    def autocast():
        return torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp)

    y_t = torch.as_tensor(y, dtype=torch.long)
    y_dev = y_t.to(device)
    train_idx = torch.as_tensor(fold.train, dtype=torch.long)
    val_idx = torch.as_tensor(fold.val, dtype=torch.long)
    test_idx = torch.as_tensor(fold.test, dtype=torch.long)
    weight = None
    if cfg.class_balanced:
        weight = torch.as_tensor(class_weights(y[fold.train], num_classes), device=device)

    history: list[dict] = []
    first_epoch = 0
    best = {"score": float("inf"), "epoch": -1, "state": None, "bad": 0}
    oracle = {"score": -1.0, "epoch": -1, "probs": None}
    ckpt_path = fold_dir / "checkpoint.pt" if fold_dir is not None else None
    if ckpt_path is not None and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        torch.set_rng_state(ck["rng"])
        if device.type == "cuda" and ck.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ck["cuda_rng"], device)
        gen.set_state(ck["gen"])
        history, first_epoch, best, oracle = ck["history"], ck["epoch"], ck["best"], ck["oracle"]

    stopped = False
    for epoch in range(first_epoch, cfg.epochs):
        model.train()
        # Sums stay on the device: no GPU sync per batch.
        total, correct, loss_sum = 0, torch.zeros((), device=device), torch.zeros((), device=device)
        chunks = _batches(len(train_idx), cfg.batch_size, gen)
        for step, chunk in enumerate(chunks):
            idx = train_idx[chunk]
            batch = augment(_gather(X, idx, fmt), gen)
            target = y_dev[idx.to(device)]
            with autocast():
                logits, aux = _forward(model, batch)
                loss = F.cross_entropy(logits.float(), target, weight=weight)
                if aux is not None:
                    loss = loss + aux.float()
            # Gradient accumulation: one optimizer step per `accumulate` batches (and at epoch end).
            if step % cfg.accumulate == 0:
                optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss / min(cfg.accumulate, len(chunks) - step // cfg.accumulate * cfg.accumulate)).backward()
            if (step + 1) % cfg.accumulate == 0 or step + 1 == len(chunks):
                scaler.step(optimizer)
                scaler.update()
            n = len(idx)
            total += n
            loss_sum += loss.detach().float() * n
            correct += (logits.detach().argmax(1) == target).sum()
        lr_now = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        row = {"epoch": epoch + 1, "lr": lr_now, "train_loss": float(loss_sum) / total, "train_acc": float(correct) / total}
        if callable(getattr(model, "epoch_log", None)):  # hook: model scalars per epoch (e.g. SOA angles)
            row.update({k: float(v) for k, v in model.epoch_log().items()})
        if len(val_idx):
            vlog = _predict(model, X, val_idx, cfg.batch_size, autocast, fmt)
            vy = y_t[val_idx]
            row["val_loss"] = float(F.cross_entropy(vlog, vy, weight=None if weight is None else weight.cpu()))
            row["val_acc"] = float((vlog.argmax(1) == vy).float().mean())
            if cfg.early_stopping:
                if row["val_loss"] < best["score"] - 1e-6:
                    best = {"score": row["val_loss"], "epoch": epoch + 1, "state": _cpu_state(model), "bad": 0}
                else:
                    best["bad"] += 1
                    stopped = best["bad"] >= cfg.patience
        if cfg.oracle:  # ORACLE bookkeeping only: never feeds the honest outputs
            tlog = _predict(model, X, test_idx, cfg.batch_size, autocast, fmt)
            tacc = float((tlog.argmax(1) == y_t[test_idx]).float().mean())
            row["ORACLE_test_acc"] = tacc
            if tacc > oracle["score"]:
                oracle = {"score": tacc, "epoch": epoch + 1, "probs": torch.softmax(tlog, 1)}
        history.append(row)
        last = stopped or epoch + 1 == cfg.epochs
        if ckpt_path is not None and not last and (epoch + 1) % cfg.checkpoint_every == 0:
            _atomic_torch_save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "scaler": scaler.state_dict(),
                    "rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                    "gen": gen.get_state(),
                    "history": history,
                    "epoch": epoch + 1,
                    "best": best,
                    "oracle": oracle,
                },
                ckpt_path,
            )
        if stopped:
            break

    if cfg.early_stopping and best["state"] is not None:
        model.load_state_dict(best["state"])
        chosen = best["epoch"]
    else:
        chosen = len(history)
    probs = torch.softmax(_predict(model, X, test_idx, cfg.batch_size, autocast, fmt), 1)
    result = FoldResult(
        name=fold.name,
        test_index=fold.test.tolist(),
        probs=probs.tolist(),
        history=history,
        epochs_run=len(history),
        best_epoch=chosen,
        seconds=time.perf_counter() - start,
        oracle={"epoch": oracle["epoch"], "probs": oracle["probs"].tolist()} if cfg.oracle else None,
    )
    return result, _cpu_state(model)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in copy.copy(model.state_dict()).items()}
