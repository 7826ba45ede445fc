"""One fold of honest subject-independent cross-validation: :class:`FoldTrainer`.

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
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MertoolError
from ..io import atomic_torch_save
from ..log import logger, progress_bar
from ..models import create_model
from .augment import augment_for
from .config import TrainConfig
from .devices import amp_mode, channels_last_for, device_label, precision_name
from .loso import Fold


class ModelHooks(Protocol):
    """Optional methods a model may define; each is used only when the model has it.

    ``param_groups`` and ``epoch_log`` are called by :class:`FoldTrainer`;
    ``load_weights`` by :func:`mertool.models.create_model` (``weights=``).
    """

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """Optimizer parameter groups (e.g. an own learning rate, or no decay, for some)."""

    def epoch_log(self) -> Mapping[str, float]:
        """Scalars logged with each epoch's row (e.g. learned SOA angles)."""

    def load_weights(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load a published checkpoint whose key names differ from the model's own."""


HOOKS = tuple(name for name in vars(ModelHooks) if not name.startswith("_"))


def model_hook(model: nn.Module, name: str) -> Callable | None:
    """The model's :class:`ModelHooks` method ``name``, or None when it does not define one."""
    if name not in HOOKS:
        raise ValueError(f"{name!r} is not a model hook; hooks: {', '.join(HOOKS)}")
    fn = getattr(model, name, None)
    return fn if callable(fn) else None


def fold_seed(seed: int, fold_index: int) -> int:
    """The seed of one fold, derived from the run's seed and the fold's position."""
    return int(np.random.SeedSequence([seed, fold_index]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed torch and NumPy (and make cuDNN deterministic when CUDA is present)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if torch.cuda.is_available():
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


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
    device: str = ""  # where it trained (devices.device_label); "" in results of mertool before 2026-11-30
    precision: str = ""  # fp32, bf16 or fp16 (devices.precision_name); "" likewise


@dataclasses.dataclass
class EarlyStop:
    """Early-stopping state: the best validation loss so far, its epoch and weights."""

    score: float = float("inf")
    epoch: int = -1
    state: dict[str, torch.Tensor] | None = None
    bad: int = 0  # epochs since the last improvement

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))  # checkpoints hold plain dicts (weights_only loading)


@dataclasses.dataclass
class OracleBest:
    """ORACLE bookkeeping: the epoch that scored best ON THE TEST FOLD (never used for honest outputs)."""

    score: float = -1.0
    epoch: int = -1
    probs: torch.Tensor | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _batches(n: int, batch_size: int, generator: torch.Generator, shuffle: bool = True) -> list[torch.Tensor]:
    """Positions ``0..n-1`` in batches: a new random order per call, or (``shuffle=False``) in order."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    chunks = list(order.split(batch_size))
    # A batch of one breaks BatchNorm in training mode: fold it into the previous batch.
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2] = torch.cat([chunks[-2], chunks[-1]])
        chunks.pop()
    return chunks


def _device_batches(
    runs: list[tuple[torch.Tensor, list[torch.Tensor]]], device: torch.device
) -> list[list[torch.Tensor]]:
    """Batches of sample indices on ``device``: for each ``(train_idx, chunks)`` (chunks as
    :func:`_batches` gives them, positions into ``train_idx``) its batches, all moved in one
    host-to-device copy, so that the steps of an epoch copy nothing from the host (a GPU
    would make the host wait at each copy)."""
    flat = torch.cat([idx[torch.cat(chunks)] for idx, chunks in runs]).to(device)
    parts = flat.split([sum(map(len, chunks)) for _, chunks in runs])
    return [list(part.split([len(c) for c in chunks])) for part, (_, chunks) in zip(parts, runs)]


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


def _make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in copy.copy(model.state_dict()).items()}


class FoldTrainer:
    """Train one fold and predict its test samples.

    :meth:`run` goes :meth:`setup` -> :meth:`resume` -> per epoch (:meth:`train_epoch`,
    :meth:`validate`, :meth:`score_test_ORACLE`, :meth:`checkpoint`) -> :meth:`result`.

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
        A resolved config (:func:`~mertool.train.config.resolve_recipe`).
    num_classes : int
    device : torch.device
    checkpoint_path : path, optional
        Epoch checkpoint file: written every ``cfg.checkpoint_every`` epochs, and resumed
        from when it exists (after a kill).
    encoding : str, optional
        The data's flow encoding (``TrainData.encoding``), which ``flow_hflip`` mirrors by.
    progress : bool
        Show a tqdm bar over the fold's epochs (with an ETA and the training loss) on stderr.
    """

    def __init__(
        self,
        X: dict[str, torch.Tensor],
        y: np.ndarray,
        fold: Fold,
        fold_index: int,
        cfg: TrainConfig,
        num_classes: int,
        device: torch.device,
        checkpoint_path: Path | None = None,
        encoding: str | None = None,
        progress: bool = False,
    ) -> None:
        self.X, self.y, self.fold, self.fold_index = X, y, fold, fold_index
        self.cfg, self.num_classes, self.device = cfg, num_classes, device
        self.checkpoint_path, self.encoding, self.progress = checkpoint_path, encoding, progress
        self.history: list[dict] = []
        self.first_epoch = 0
        self.best = EarlyStop()
        self.oracle = OracleBest()

    def setup(self) -> None:
        """Seed the fold, build the model, optimizer, scheduler, AMP scaler and index tensors."""
        cfg, device = self.cfg, self.device
        seed = fold_seed(cfg.seed, self.fold_index)
        seed_everything(seed)
        self.gen = torch.Generator().manual_seed(seed + 1)
        model = create_model(cfg.model, num_classes=self.num_classes, weights=cfg.weights, **cfg.model_kwargs)
        nhwc = channels_last_for(cfg.channels_last, cfg.model, device)
        self.fmt = torch.channels_last if nhwc else torch.contiguous_format
        self.model = model.to(device).to(memory_format=self.fmt)
        param_groups = model_hook(self.model, "param_groups")
        groups = param_groups(cfg.lr, cfg.weight_decay) if param_groups else self.model.parameters()
        self.optimizer = _make_optimizer(cfg, groups)
        self.scheduler = (
            torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
            if cfg.lr_step
            else None
        )
        self.augment = augment_for(cfg.augment, self.encoding)
        self.use_amp, self.amp_dtype = amp_mode(cfg.amp, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.y_t = torch.as_tensor(self.y, dtype=torch.long)
        self.y_dev = self.y_t.to(device)
        self.train_idx, self.val_idx, self.test_idx = (
            torch.as_tensor(idx, dtype=torch.long) for idx in (self.fold.train, self.fold.val, self.fold.test)
        )
        self.weight = None
        if cfg.class_balanced:
            self.weight = torch.as_tensor(class_weights(self.y[self.fold.train], self.num_classes), device=device)

    def resume(self) -> None:
        """Continue from the epoch checkpoint, when there is one."""
        if self.checkpoint_path is None or not self.checkpoint_path.exists():
            return
        ck = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        torch.set_rng_state(ck["rng"])
        if self.device.type == "cuda" and ck.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ck["cuda_rng"], self.device)
        self.gen.set_state(ck["gen"])
        self.history, self.first_epoch = ck["history"], ck["epoch"]
        self.best, self.oracle = EarlyStop(**ck["best"]), OracleBest(**ck["oracle"])
        logger.info(f"resuming fold {self.fold.name} from epoch {self.first_epoch + 1} "
                    f"({self.first_epoch} of {self.cfg.epochs} done)")

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.use_amp)

    @torch.no_grad()
    def _predict(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (float32, on CPU) of samples ``idx`` in eval mode."""
        self.model.eval()
        outs = []
        for chunk in idx.split(max(self.cfg.batch_size, 1)):
            with self._autocast():
                logits, _ = _forward(self.model, _gather(self.X, chunk, self.fmt))
            outs.append(logits.float().cpu())
        return torch.cat(outs) if outs else torch.empty(0)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training samples; returns the epoch's log row."""
        cfg, device, model = self.cfg, self.device, self.model
        model.train()
        # Sums stay on the device: no GPU sync per batch.
        total, correct, loss_sum = 0, torch.zeros((), device=device), torch.zeros((), device=device)
        chunks = _batches(len(self.train_idx), cfg.batch_size, self.gen, cfg.shuffle)
        for step, idx in enumerate(_device_batches([(self.train_idx, chunks)], device)[0]):
            batch = self.augment(_gather(self.X, idx, self.fmt), self.gen)
            target = self.y_dev[idx]
            with self._autocast():
                logits, aux = _forward(model, batch)
                loss = F.cross_entropy(logits.float(), target, weight=self.weight)
                if aux is not None:
                    loss = loss + aux.float()
            # Gradient accumulation: one optimizer step per `accumulate` batches (and at epoch end).
            if step % cfg.accumulate == 0:
                self.optimizer.zero_grad(set_to_none=True)
            group = min(cfg.accumulate, len(chunks) - step // cfg.accumulate * cfg.accumulate)
            self.scaler.scale(loss / group).backward()
            if (step + 1) % cfg.accumulate == 0 or step + 1 == len(chunks):
                self.scaler.step(self.optimizer)
                self.scaler.update()
            total += len(idx)
            loss_sum += loss.detach().float() * len(idx)
            correct += (logits.detach().argmax(1) == target).sum()
        lr_now = self.optimizer.param_groups[0]["lr"]
        if self.scheduler is not None:
            self.scheduler.step()
        row = {"epoch": epoch + 1, "lr": lr_now, "train_loss": float(loss_sum) / total, "train_acc": float(correct) / total}
        epoch_log = model_hook(model, "epoch_log")
        if epoch_log is not None:
            row.update({k: float(v) for k, v in epoch_log().items()})
        return row

    def validate(self, row: dict, epoch: int) -> bool:
        """Score the validation subjects into ``row``; True when early stopping says stop."""
        if not len(self.val_idx):
            return False
        vlog = self._predict(self.val_idx)
        vy = self.y_t[self.val_idx]
        row["val_loss"] = float(F.cross_entropy(vlog, vy, weight=None if self.weight is None else self.weight.cpu()))
        row["val_acc"] = float((vlog.argmax(1) == vy).float().mean())
        if not self.cfg.early_stopping:
            return False
        if row["val_loss"] < self.best.score - 1e-6:
            self.best = EarlyStop(row["val_loss"], epoch + 1, _cpu_state(self.model), 0)
            return False
        self.best.bad += 1
        return self.best.bad >= self.cfg.patience

    def score_test_ORACLE(self, row: dict, epoch: int) -> None:
        """ORACLE bookkeeping only (oracle mode): test accuracy per epoch; never feeds the honest outputs."""
        if not self.cfg.oracle:
            return
        tlog = self._predict(self.test_idx)
        tacc = float((tlog.argmax(1) == self.y_t[self.test_idx]).float().mean())
        row["ORACLE_test_acc"] = tacc
        if tacc > self.oracle.score:
            self.oracle = OracleBest(tacc, epoch + 1, torch.softmax(tlog, 1))

    def checkpoint(self, epochs_done: int) -> None:
        """Write the resumable state after ``epochs_done`` epochs (atomically)."""
        atomic_torch_save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "scaler": self.scaler.state_dict(),
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                "gen": self.gen.get_state(),
                "history": self.history,
                "epoch": epochs_done,
                "best": self.best.to_dict(),
                "oracle": self.oracle.to_dict(),
            },
            self.checkpoint_path,
        )

    def result(self, start: float) -> tuple[FoldResult, dict[str, torch.Tensor]]:
        """Pick the returned weights (last, or best validation loss) and predict the test fold once."""
        if self.cfg.early_stopping and self.best.state is not None:
            self.model.load_state_dict(self.best.state)
            chosen = self.best.epoch
        else:
            chosen = len(self.history)
        probs = torch.softmax(self._predict(self.test_idx), 1)
        oracle = {"epoch": self.oracle.epoch, "probs": self.oracle.probs.tolist()} if self.cfg.oracle else None
        result = FoldResult(
            name=self.fold.name,
            test_index=self.fold.test.tolist(),
            probs=probs.tolist(),
            history=self.history,
            epochs_run=len(self.history),
            best_epoch=chosen,
            seconds=time.perf_counter() - start,
            oracle=oracle,
            device=device_label(self.device),
            precision=precision_name(self.use_amp, self.amp_dtype),
        )
        return result, _cpu_state(self.model)

    def run(self) -> tuple[FoldResult, dict[str, torch.Tensor]]:
        """Train the fold; returns the result and the final weights (state_dict on CPU)."""
        start = time.perf_counter()
        self.setup()
        self.resume()
        bar = progress_bar(total=self.cfg.epochs, initial=self.first_epoch, desc=f"fold {self.fold.name}", unit="epoch",
                           leave=False, progress=self.progress)
        try:
            for epoch in range(self.first_epoch, self.cfg.epochs):
                row = self.train_epoch(epoch)
                stopped = self.validate(row, epoch)
                self.score_test_ORACLE(row, epoch)
                self.history.append(row)
                bar.set_postfix(loss=f"{row['train_loss']:.3f}", refresh=False)
                bar.update()
                last = stopped or epoch + 1 == self.cfg.epochs
                if self.checkpoint_path is not None and not last and (epoch + 1) % self.cfg.checkpoint_every == 0:
                    self.checkpoint(epoch + 1)
                if stopped:
                    break
        finally:
            bar.close()
        return self.result(start)

