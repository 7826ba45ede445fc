"""Stacked folds: several folds (or seeds) of one small model trained as one computation.

:class:`StackedTrainer` trains R *replicas* -- (fold, seed) pairs of one config -- with
``torch.func``: the replicas' parameters and BatchNorm buffers are stacked
(``stack_module_state``), one ``vmap(grad(functional_call))`` gives every replica its own
gradient, and a batched functional Adam / AdamW / SGD step updates each replica with its own
optimizer state and step count.

Each replica is set up exactly as :class:`~mertool.train.fold.FoldTrainer` sets up that fold
alone (same fold seed, initial weights, shuffling generator, augmentation draws, class
weights, lr schedule), so without dropout a stacked fold ends with the sequential engine's
weights up to float rounding. Folds of different training-set sizes have different batch
counts and last-batch sizes: at each step the replicas are grouped by their batch size and
each group runs as one vmapped call (replicas without a batch left skip the step), so every
replica sees exactly its own batches, and BatchNorm statistics never mix in padding.

Dropout draws come from one generator per replica group (``vmap(randomness="different")``):
runs are reproducible from the seed and the replica grouping (``--fold-batch``), but the
draws differ from the sequential engine's, and depend on which replicas share the stack.
Replicas of several seeds therefore share a stack only for models that draw no random
numbers in training (:func:`draws_random`); every other stream (initial weights, data
order, augmentation) is the replica's own, derived from its (seed, fold). Early stopping, validation splits, ORACLE
bookkeeping, gradient accumulation, fp16 AMP (it needs a gradient scaler; bf16 autocast --
``amp: bf16``, or a GPU's default AMP where the GPU supports bf16 -- runs stacked) and models
with :class:`~mertool.train.fold.ModelHooks` training hooks run sequentially only
(:func:`stack_refusal` says why).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

from ..io import atomic_torch_save
from ..log import logger, progress_bar
from ..models import create_model, get_entry
from .config import TrainConfig
from .devices import amp_mode
from .fold import FoldResult, FoldTrainer, _batches, fold_seed, model_hook
from .loso import Fold

#: Input stages whose models the stacked engine trains (small networks on flow maps).
STACKABLE_STAGES = ("flow",)
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam / AdamW defaults, as FoldTrainer uses them


def stack_refusal(cfg: TrainConfig, device: torch.device, num_classes: int) -> str | None:
    """Why ``cfg`` cannot train stacked (None when it can); such runs train fold by fold."""
    entry = get_entry(cfg.model)
    reasons = {
        f"input stage {entry.input.stage!r} (stacked: {', '.join(STACKABLE_STAGES)})": entry.input.stage
        not in STACKABLE_STAGES,
        "early stopping": cfg.early_stopping,
        "a validation split": cfg.val_fraction > 0,
        "ORACLE bookkeeping": cfg.oracle,
        "gradient accumulation": cfg.accumulate != 1,
        "fp16 AMP (a gradient scaler)": amp_mode(cfg.amp, device) == (True, torch.float16),
    }
    found = [r for r, hit in reasons.items() if hit]
    if not found:
        model = create_model(cfg.model, num_classes=num_classes, **cfg.model_kwargs)
        found = [f"model hook {h}" for h in ("param_groups", "epoch_log") if model_hook(model, h)]
    return ", ".join(found) or None


def auto_fold_batch(cfg: TrainConfig, X: dict[str, torch.Tensor], num_classes: int, device: torch.device,
                    most: int, share: float = 0.25) -> int:
    """How many replicas fit ``share`` of the device's free memory (at least 1, at most ``most``).

    A replica needs the activations one training batch saves for the backward pass
    (measured on one forward pass) plus four copies of its parameters (weights, gradients,
    two optimizer moments).
    """
    model = create_model(cfg.model, num_classes=num_classes, **cfg.model_kwargs).to(device)
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(**{k: v[: cfg.batch_size].to(device) for k, v in X.items()})
    per_replica = saved + 4 * sum(p.numel() * p.element_size() for p in model.parameters())
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(max(1, min(most, share * free // per_replica)))


def draws_random(cfg: TrainConfig, X: dict[str, torch.Tensor], num_classes: int) -> bool:
    """Whether ``cfg.model`` draws random numbers in a training forward pass (dropout, stochastic depth).

    Found by running one forward pass of two samples of ``X`` on the CPU in training mode
    and comparing the global generator's state before and after (it is restored).
    """
    with torch.random.fork_rng(devices=[]):
        model = create_model(cfg.model, num_classes=num_classes, **cfg.model_kwargs).train()
        before = torch.get_rng_state()
        with torch.no_grad():
            model(**{k: v[:2].cpu() for k, v in X.items()})
        return not torch.equal(before, torch.get_rng_state())


def _fp32_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose BatchNorm layers take float32 input, for vmapped autocast.

    Under ``vmap`` BatchNorm refuses a bf16 input with float32 statistics (outside it the
    kernel mixes them); a BatchNorm input in float32 computes what the mixed kernel
    computes, and the next layer's autocast casts the output back to bf16.
    """
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.register_forward_pre_hook(lambda _, args: tuple(a.float() for a in args))
    return model


@dataclasses.dataclass(frozen=True)
class Replica:
    """One member of a stack: a fold, its position and its run's seed (the two seed it)."""

    fold: Fold
    index: int
    seed: int


def _optimizer_step(cfg: TrainConfig, p, g, state: dict, steps: torch.Tensor, lr: float):
    """The update of ``torch.optim`` Adam / AdamW / SGD, batched over replicas (dim 0).

    ``state`` holds this parameter's ``m`` and ``v`` (Adam) or ``buf`` (SGD) for the same
    replicas; ``steps`` (float, one per replica) counts each replica's steps including this one.
    """
    wd = cfg.weight_decay
    if cfg.optimizer == "sgd":
        d = g + wd * p if wd else g
        state["buf"] = cfg.momentum * state["buf"] + d if cfg.momentum else d
        return p - lr * state["buf"]
    if cfg.optimizer == "adamw":
        p = p * (1 - lr * wd)
    elif wd:
        g = g + wd * p
    b1, b2 = ADAM_BETAS
    state["m"] = torch.lerp(state["m"], g, 1 - b1)
    state["v"] = state["v"] * b2 + (1 - b2) * g * g
    shape = (-1,) + (1,) * (p.ndim - 1)
    bc1 = (1 - b1**steps).to(p.dtype).view(shape)
    bc2_sqrt = (1 - b2**steps).sqrt().to(p.dtype).view(shape)
    denom = state["v"].sqrt() / bc2_sqrt + ADAM_EPS
    return p - (lr / bc1) * state["m"] / denom


class StackedTrainer:
    """Train several replicas (folds x seeds) of one config as one stacked computation.

    Parameters
    ----------
    X, y, cfg, num_classes, device, encoding
        As for :class:`~mertool.train.fold.FoldTrainer` (``cfg.seed`` is replaced per replica).
    replicas : list of Replica
    checkpoint_path : path, optional
        The group's epoch checkpoint (every ``cfg.checkpoint_every`` epochs; resumed from
        when it exists and names the same replicas).
    progress : bool
        Show a bar over the group's epochs, with its ETA (:func:`mertool.log.progress_bar`).
    """

    def __init__(self, X, y, replicas: list[Replica], cfg: TrainConfig, num_classes: int, device: torch.device,
                 checkpoint_path: Path | None = None, encoding: str | None = None, progress: bool = False) -> None:
        self.cfg, self.device, self.replicas, self.checkpoint_path = cfg, device, replicas, checkpoint_path
        self.progress = progress
        self.solo = [
            FoldTrainer(X, y, r.fold, r.index, dataclasses.replace(cfg, seed=r.seed, channels_last=False),
                        num_classes, device, None, encoding)
            for r in replicas
        ]
        self.X = X
        self.first_epoch = 0

    def setup(self) -> None:
        """Set every replica up as its fold alone would be, then stack parameters and state."""
        for t in self.solo:
            t.setup()
        self.template = _fp32_batchnorm(self.solo[0].model) if self.solo[0].use_amp else self.solo[0].model
        params, buffers = stack_module_state([t.model for t in self.solo])
        self.params = {k: v.detach() for k, v in params.items()}
        self.buffers = {k: v.detach().clone() for k, v in buffers.items()}
        keys = ("buf",) if self.cfg.optimizer == "sgd" else ("m", "v")
        self.opt = {k: {s: torch.zeros_like(v) for s in keys} for k, v in self.params.items()}
        self.steps = torch.zeros(len(self.solo), dtype=torch.float64, device=self.device)
        num_classes = self.solo[0].num_classes
        self.weights = torch.stack(
            [t.weight if t.weight is not None else torch.ones(num_classes, device=self.device) for t in self.solo]
        )
        first = self.replicas[0]
        torch.manual_seed(fold_seed(first.seed, first.index) + 2)  # the group's dropout stream
        self.histories: list[list[dict]] = [[] for _ in self.solo]
        self._grad = vmap(grad(self._loss, has_aux=True), randomness="different")

    def _loss(self, params, buffers, batch, target, weight):
        with self.solo[0]._autocast():  # the config's autocast (amp), as FoldTrainer runs the forward pass
            out = functional_call(self.template, (params, buffers), (), batch)
            logits, aux = (out[0], out[1]) if isinstance(out, (tuple, list)) else (out, None)
            loss = F.cross_entropy(logits.float(), target, weight=weight)
            if aux is not None:
                loss = loss + aux.float()
        return loss, (loss.detach(), logits.detach())

    def lr(self, epoch: int) -> float:
        """The epoch's learning rate (StepLR as FoldTrainer's scheduler computes it)."""
        cfg, lr = self.cfg, self.cfg.lr
        if cfg.lr_step:
            for _ in range(epoch // cfg.lr_step):
                lr *= cfg.lr_gamma
        return lr

    def _step(self, members: list[int], batches: list[dict], targets: list[torch.Tensor], lr: float):
        """One optimizer step of the replicas ``members`` on their own batches; returns (loss, logits) per member."""
        whole = members == list(range(len(self.solo)))
        idx = torch.as_tensor(members, device=self.device)
        sub = (lambda d: d) if whole else (lambda d: {k: v[idx] for k, v in d.items()})
        params, buffers = sub(self.params), sub(self.buffers)
        batch = {k: torch.stack([b[k] for b in batches]) for k in batches[0]}
        grads, (loss, logits) = self._grad(params, buffers, batch, torch.stack(targets), self.weights[idx])
        self.steps[idx] += 1
        for k, p in params.items():
            state = {s: v if whole else v[idx] for s, v in self.opt[k].items()}
            new = _optimizer_step(self.cfg, p, grads[k], state, self.steps[idx], lr)
            if whole:
                self.params[k], self.opt[k] = new, state
            else:
                self.params[k][idx] = new
                for s, v in state.items():
                    self.opt[k][s][idx] = v
        if not whole:  # BatchNorm statistics were updated in the gathered copies
            for k, v in buffers.items():
                self.buffers[k][idx] = v
        return loss, logits

    def train_epoch(self, epoch: int) -> None:
        """One pass of every replica over its own training samples, in its own batch order."""
        lr = self.lr(epoch)
        for t in self.solo:
            t.model.train()
        chunks = [_batches(len(t.train_idx), self.cfg.batch_size, t.gen, self.cfg.shuffle) for t in self.solo]
        sums = [[0, 0.0, 0] for _ in self.solo]  # samples, loss sum, correct
        for step in range(max(len(c) for c in chunks)):
            by_size: dict[int, list[int]] = {}
            for r, c in enumerate(chunks):
                if step < len(c):
                    by_size.setdefault(len(c[step]), []).append(r)
            for members in by_size.values():
                batches, targets = [], []
                for r in members:
                    t = self.solo[r]
                    idx = t.train_idx[chunks[r][step]]
                    batches.append(t.augment({k: v[idx.to(v.device)] for k, v in self.X.items()}, t.gen))
                    targets.append(t.y_dev[idx.to(self.device)])
                loss, logits = self._step(members, batches, targets, lr)
                for j, r in enumerate(members):
                    n = len(targets[j])
                    sums[r][0] += n
                    sums[r][1] += float(loss[j]) * n
                    sums[r][2] += int((logits[j].argmax(1) == targets[j]).sum())
        for r, (n, loss_sum, correct) in enumerate(sums):
            self.histories[r].append({"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / n, "train_acc": correct / n})

    def _state(self) -> dict:
        return {
            "replicas": [(r.fold.name, r.index, r.seed) for r in self.replicas],
            "params": self.params, "buffers": self.buffers, "opt": self.opt, "steps": self.steps,
            "gens": [t.gen.get_state() for t in self.solo], "rng": torch.get_rng_state(),
            "histories": self.histories, "epoch": len(self.histories[0]),
        }

    def resume(self) -> None:
        """Continue from the group's checkpoint when it exists and holds these replicas."""
        if self.checkpoint_path is None or not self.checkpoint_path.exists():
            return
        ck = torch.load(self.checkpoint_path, map_location=self.device, weights_only=True)
        if [tuple(x) for x in ck["replicas"]] != [(r.fold.name, r.index, r.seed) for r in self.replicas]:
            return
        self.params, self.buffers, self.opt, self.steps = ck["params"], ck["buffers"], ck["opt"], ck["steps"]
        for t, g in zip(self.solo, ck["gens"]):
            t.gen.set_state(g.cpu())
        torch.set_rng_state(ck["rng"].cpu())
        self.histories, self.first_epoch = ck["histories"], ck["epoch"]
        logger.info(f"resuming {self.name} from epoch {self.first_epoch + 1} "
                    f"({self.first_epoch} of {self.cfg.epochs} done)")

    @property
    def name(self) -> str:
        """The group as logs and the progress bar name it: ``fold s1``, ``4 stacked folds s1..s4``, or
        ``8 stacked replicas s1..s4 x seeds 0,1``."""
        n, first, last = len(self.replicas), self.replicas[0].fold.name, self.replicas[-1].fold.name
        seeds = sorted({r.seed for r in self.replicas})
        if len(seeds) > 1:
            return f"{n} stacked replicas {first}..{last} x seeds {','.join(map(str, seeds))}"
        return f"fold {first}" if n == 1 else f"{n} stacked folds {first}..{last}"

    def results(self, start: float) -> list[tuple[FoldResult, dict[str, torch.Tensor]]]:
        """Load each replica's weights into its model and predict its test fold once (FoldTrainer.result)."""
        seconds = (time.perf_counter() - start) / len(self.solo)
        out = []
        for r, t in enumerate(self.solo):
            state = {k: v[r] for k, v in {**self.params, **self.buffers}.items()}
            t.model.load_state_dict(state, strict=False)
            t.history = self.histories[r]
            result, weights = t.result(time.perf_counter() - seconds)
            out.append((result, weights))
        return out

    def run(self) -> list[tuple[FoldResult, dict[str, torch.Tensor]]]:
        """Train every replica for the epoch budget; one (result, final weights) per replica, in order."""
        start = time.perf_counter()
        self.setup()
        self.resume()
        bar = progress_bar(total=self.cfg.epochs, initial=self.first_epoch, desc=self.name, unit="epoch",
                           leave=False, progress=self.progress)
        try:
            for epoch in range(self.first_epoch, self.cfg.epochs):
                self.train_epoch(epoch)
                mean_loss = np.mean([h[-1]["train_loss"] for h in self.histories])
                bar.set_postfix(loss=f"{mean_loss:.3f}", refresh=False)
                bar.update()
                last = epoch + 1 == self.cfg.epochs
                if self.checkpoint_path is not None and not last and (epoch + 1) % self.cfg.checkpoint_every == 0:
                    atomic_torch_save(self._state(), self.checkpoint_path)
        finally:
            bar.close()
        return self.results(start)


def seed_summary(per_seed: dict[int, dict], keys=("uf1", "uar", "accuracy")) -> dict:
    """Mean and sample standard deviation over seeds of each metric in ``keys``, plus the per-seed values."""
    out: dict = {"seeds": sorted(per_seed)}
    for k in keys:
        vals = np.array([per_seed[s][k] for s in sorted(per_seed)], dtype=np.float64)
        out[k] = float(vals.mean())
        out[f"{k}_sd"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        out[f"{k}_per_seed"] = vals.tolist()
    return out
