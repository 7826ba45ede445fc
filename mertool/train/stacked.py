"""Stacked folds: several folds (or seeds) of one small model trained as one computation.

:class:`StackedTrainer` trains R *replicas* -- (fold, seed) pairs of one config -- with
``torch.func``: the replicas' parameters and BatchNorm buffers are stacked
(``stack_module_state``), one ``vmap(grad(functional_call))`` gives every replica its own
gradient, and a batched functional Adam / AdamW / SGD step updates each replica with its own
optimizer state and step count.

Each replica is set up exactly as :class:`~mertool.train.fold.FoldTrainer` sets up that fold
alone (same fold seed, initial weights, shuffling generator, augmentation draws, class
weights, lr schedule, dropout draws on the CPU), so a stacked fold ends with the sequential
engine's weights up to float rounding. Folds of different training-set sizes have different batch
counts and last-batch sizes: at each step the replicas are grouped by their batch size and
each group runs as one vmapped call (replicas without a batch left skip the step), so every
replica sees exactly its own batches, and BatchNorm statistics never mix in padding.

Each replica keeps its own dropout stream: the stacked model's ``nn.Dropout`` layers multiply
by masks drawn outside ``vmap``, replica by replica, from the replica's own generator, which
starts where the fold alone would start drawing. On the CPU the masks are the ones the fold
alone draws (``F.dropout`` is ``x * bernoulli(1 - p) / (1 - p)`` there), so a stacked fold
equals its solo run with dropout on too; on a GPU the fold alone uses a fused dropout kernel,
so the draws differ from it, but still depend only on the replica's (seed, fold), never on
which replicas share the stack (``--fold-batch``) -- so seeds share stacks. Models that draw
random numbers anywhere else, or call one dropout layer twice, train fold by fold
(:func:`stack_refusal`). Every other stream (initial weights, data order, augmentation) is the
replica's own too. Early stopping and ORACLE bookkeeping are per replica: each replica
validates on its own validation subjects after each epoch and leaves the stack when its
patience runs out. Gradient accumulation, fp16 AMP (it needs a gradient scaler; bf16
autocast -- ``amp: bf16``, or a GPU's default AMP where the GPU supports bf16 -- runs
stacked) and models with :class:`~mertool.train.fold.ModelHooks` training hooks run
sequentially only (:func:`stack_refusal` says why).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
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
from .fold import (
    EarlyStop, FoldResult, FoldTrainer, OracleBest, _batches, _device_batches, fold_seed, model_hook,
)
from .loso import Fold

#: Input stages whose models the stacked engine trains (small networks on flow maps).
STACKABLE_STAGES = ("flow",)
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam / AdamW defaults, as FoldTrainer uses them


def stack_refusal(cfg: TrainConfig, device: torch.device, num_classes: int,
                  X: dict[str, torch.Tensor] | None = None) -> str | None:
    """Why ``cfg`` cannot train stacked (None when it can); such runs train fold by fold.

    ``X`` (the inputs; zeros of the model's input shape when None) feeds the forward pass
    that checks the model's random draws (:func:`dropout_calls`).
    """
    entry = get_entry(cfg.model)
    reasons = {
        f"input stage {entry.input.stage!r} (stacked: {', '.join(STACKABLE_STAGES)})": entry.input.stage
        not in STACKABLE_STAGES,
        "gradient accumulation": cfg.accumulate != 1,
        "fp16 AMP (a gradient scaler)": amp_mode(cfg.amp, device) == (True, torch.float16),
    }
    found = [r for r, hit in reasons.items() if hit]
    if not found:
        model = create_model(cfg.model, num_classes=num_classes, **cfg.model_kwargs)
        found = [f"model hook {h}" for h in ("param_groups", "epoch_log") if model_hook(model, h)]
        if X is None:
            X = {k: torch.zeros(2, *shape) for k, shape in entry.input.arrays.items()}
        try:
            dropout_calls(model, {k: v[:2].cpu() for k, v in X.items()})
        except ValueError as e:
            found.append(str(e))
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


@dataclasses.dataclass(frozen=True)
class DropoutCall:
    """One ``nn.Dropout`` call of a training forward pass: the layer, its input's per-sample shape and dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    p: float


def dropout_calls(
    model: nn.Module, batch: dict[str, torch.Tensor], autocast=contextlib.nullcontext
) -> list[DropoutCall]:
    """The ``nn.Dropout`` calls (p > 0) of one training forward pass of ``model`` on ``batch``, in order.

    The pass runs on a copy of the model, without gradients, under ``autocast()``, and leaves
    the global generator as it found it. Raises ValueError when the calls cannot be replaced
    by masks drawn outside the pass: a dropout layer called twice, one whose input's first
    dimension is not the batch, or random numbers drawn anywhere else (another random layer).
    """
    model = copy.deepcopy(model)  # the passes run in training mode: BatchNorm statistics move
    n = len(next(iter(batch.values())))
    layers = {m: name for name, m in model.named_modules() if type(m) is nn.Dropout and m.p > 0}
    calls: list[DropoutCall] = []

    def record(m, args):
        if not m.training:
            return
        x = args[0]
        calls.append(DropoutCall(layers[m], tuple(x.shape[1:]), x.dtype, float(m.p)))
        if x.ndim == 0 or x.shape[0] != n:
            raise ValueError(f"dropout layer {layers[m]!r} does not take the batch in its first dimension")

    for m in layers:
        m.register_forward_pre_hook(record)
    device = next(iter(batch.values())).device
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), torch.no_grad(), autocast():
        model.train()
        model(**batch)
        for m in layers:
            m.eval()  # now a pass that draws random numbers draws them outside nn.Dropout
        before = torch.get_rng_state()
        model(**batch)
        if not torch.equal(before, torch.get_rng_state()):
            raise ValueError("random numbers drawn outside nn.Dropout")
    twice = sorted({c.name for c in calls if sum(d.name == c.name for d in calls) > 1})
    if twice:
        raise ValueError(f"dropout layer(s) {', '.join(map(repr, twice))} called twice in one pass")
    return calls


class _MaskDropout(nn.Module):
    """``nn.Dropout`` whose mask is its buffer ``mask`` (``bernoulli(1 - p) / (1 - p)``), filled per replica
    by the stacked step; the same product ``F.dropout`` computes."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.register_buffer("mask", torch.ones(()), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask if self.training and self.p > 0 else x


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


def _mask_dropouts(model: nn.Module) -> nn.Module:
    """``model`` with every ``nn.Dropout`` replaced (in place) by a :class:`_MaskDropout` of the same p."""
    for m in list(model.modules()):
        for name, child in m.named_children():
            if type(child) is nn.Dropout:
                setattr(m, name, _MaskDropout(child.p))
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

    def _dropout_generator(self, replica: Replica) -> torch.Generator:
        """The replica's dropout stream: on the CPU where the fold alone draws from after its set-up
        (the global generator's state then), on a GPU a generator of that device seeded by the fold."""
        if self.device.type == "cpu":
            gen = torch.Generator()
            gen.set_state(torch.get_rng_state())
            return gen
        return torch.Generator(self.device).manual_seed(fold_seed(replica.seed, replica.index))

    def setup(self) -> None:
        """Set every replica up as its fold alone would be, then stack parameters and state."""
        self.drop_gens = []
        for t, r in zip(self.solo, self.replicas):
            t.setup()
            self.drop_gens.append(self._dropout_generator(r))
        first = self.solo[0]
        template = _fp32_batchnorm(first.model) if first.use_amp else copy.deepcopy(first.model)
        self.dropouts = dropout_calls(template, {k: v[:2] for k, v in self.X.items()}, first._autocast)
        self.template = _mask_dropouts(template)
        self.draw_runs: list[list[DropoutCall]] = []  # consecutive dropout calls with the same p
        for c in self.dropouts:
            if self.draw_runs and self.draw_runs[-1][0].p == c.p:
                self.draw_runs[-1].append(c)
            else:
                self.draw_runs.append([c])
        params, buffers = stack_module_state([t.model for t in self.solo])
        self.params = {k: v.detach() for k, v in params.items()}
        self.buffers = {k: v.detach().clone() for k, v in buffers.items()}
        keys = ("buf",) if self.cfg.optimizer == "sgd" else ("m", "v")
        self.opt = {k: {s: torch.zeros_like(v) for s in keys} for k, v in self.params.items()}
        self.steps = torch.zeros(len(self.solo), dtype=torch.float64, device=self.device)
        num_classes = first.num_classes
        self.weights = torch.stack(
            [t.weight if t.weight is not None else torch.ones(num_classes, device=self.device) for t in self.solo]
        )
        self.active = list(range(len(self.solo)))  # replicas still training (early stopping takes them out)
        self._row_cache: dict[tuple[int, ...], torch.Tensor] = {}
        self.histories: list[list[dict]] = [[] for _ in self.solo]
        self._grad = vmap(grad(self._loss, has_aux=True))  # randomness="error": masks come from outside

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

    def _masks(self, members: list[int], n: int) -> dict[str, torch.Tensor]:
        """This step's dropout masks (buffer name -> members x n x ...), each replica's from its own stream,
        layer by layer in the order its forward pass calls them (the order the fold alone draws them in).

        Consecutive layers with the same p are drawn in one call per replica (one kernel on a GPU, not
        one per layer): on the CPU one draw of the summed size gives what the draws one after another give.
        """
        per = []
        for r in members:
            masks = []
            for run in self.draw_runs:
                keep = 1 - run[0].p
                sizes = [n * math.prod(c.shape) for c in run]
                flat = torch.empty(sum(sizes), device=self.device).bernoulli_(keep, generator=self.drop_gens[r])
                masks += [part.view(n, *c.shape).to(c.dtype).div_(keep) for part, c in zip(flat.split(sizes), run)]
            per.append(masks)
        return {f"{c.name}.mask": torch.stack([masks[j] for masks in per]) for j, c in enumerate(self.dropouts)}

    def _step(self, members: list[int], batch: dict[str, torch.Tensor], targets: torch.Tensor, lr: float):
        """One optimizer step of the replicas ``members`` on their own batches (``batch``: members x n x ...);
        returns (loss, logits) per member."""
        whole = members == list(range(len(self.solo)))
        idx = self._rows(members)
        sub = (lambda d: d) if whole else (lambda d: {k: v[idx] for k, v in d.items()})
        params, buffers = sub(self.params), sub(self.buffers)
        masks = self._masks(members, targets.shape[1])
        grads, (loss, logits) = self._grad(params, {**buffers, **masks}, batch, targets, self.weights[idx])
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
        """One pass of every active replica over its own training samples, in its own batch order.

        The loss and accuracy sums stay on the device: the host does not wait for it inside the epoch.
        """
        lr = self.lr(epoch)
        self.template.train()
        chunks = self._epoch_batches()
        seen = dict.fromkeys(self.active, 0)
        loss_sum = torch.zeros(len(self.solo), device=self.device)
        correct = torch.zeros(len(self.solo), dtype=torch.long, device=self.device)
        for step in range(max(len(c) for c in chunks.values())):
            by_size: dict[int, list[int]] = {}
            for r, c in chunks.items():
                if step < len(c):
                    by_size.setdefault(len(c[step]), []).append(r)
            for n, members in by_size.items():
                idx = torch.stack([chunks[r][step] for r in members])  # members x n, on the device
                batch, targets = self._gather(members, idx), self.solo[0].y_dev[idx]
                for r in members:
                    seen[r] += n
                loss, logits = self._step(members, batch, targets, lr)
                rows = self._rows(members)
                loss_sum.index_add_(0, rows, loss.detach().float() * n)
                correct.index_add_(0, rows, (logits.argmax(2) == targets).sum(1))
        loss_sum, correct = loss_sum.tolist(), correct.tolist()
        for r, n in seen.items():
            self.histories[r].append({"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum[r] / n,
                                      "train_acc": correct[r] / n})

    def _gather(self, members: list[int], idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """The members' batches (``idx``: members x n sample indices), stacked: members x n x ...;
        with an augmentation, each replica's drawn from its own generator, as the fold alone draws it."""
        batch = {k: v[idx.to(v.device)] for k, v in self.X.items()}
        if self.cfg.augment == "none":
            return batch
        views = [self.solo[r].augment({k: b[j] for k, b in batch.items()}, self.solo[r].gen)
                 for j, r in enumerate(members)]
        return {k: torch.stack([v[k] for v in views]) for k in batch}

    def _epoch_batches(self) -> dict[int, list[torch.Tensor]]:
        """Each active replica's batches of this epoch (its own order, from its own generator) as sample
        indices on the device, all moved there in one copy (:func:`~mertool.train.fold._device_batches`)."""
        runs = [(self.solo[r].train_idx,
                 _batches(len(self.solo[r].train_idx), self.cfg.batch_size, self.solo[r].gen, self.cfg.shuffle))
                for r in self.active]
        return dict(zip(self.active, _device_batches(runs, self.device)))

    def _rows(self, members: list[int]) -> torch.Tensor:
        """``members`` as an index tensor on the device (made once per member list: no copy per step)."""
        key = tuple(members)
        if key not in self._row_cache:
            self._row_cache[key] = torch.as_tensor(members, device=self.device)
        return self._row_cache[key]

    def evaluate(self, epoch: int) -> None:
        """Per active replica, what the fold alone does after an epoch: score its validation subjects
        (early stopping takes it out of the stack when its patience runs out) and, in oracle mode,
        its test fold for the ORACLE outputs."""
        if not any(len(t.val_idx) for t in self.solo) and not self.cfg.oracle:
            return
        for r in list(self.active):
            t, row = self.solo[r], self.histories[r][-1]
            self._load(r)
            if t.validate(row, epoch):
                self.active.remove(r)
            t.score_test_ORACLE(row, epoch)

    def _load(self, r: int) -> None:
        """Put replica ``r``'s stacked weights and statistics into its own model."""
        self.solo[r].model.load_state_dict({k: v[r] for k, v in {**self.params, **self.buffers}.items()}, strict=False)

    def _state(self) -> dict:
        return {
            "replicas": [(r.fold.name, r.index, r.seed) for r in self.replicas],
            "params": self.params, "buffers": self.buffers, "opt": self.opt, "steps": self.steps,
            "gens": [t.gen.get_state() for t in self.solo], "dropout_gens": [g.get_state() for g in self.drop_gens],
            "best": [t.best.to_dict() for t in self.solo], "oracle": [t.oracle.to_dict() for t in self.solo],
            "active": self.active, "histories": self.histories, "epoch": self.epochs_done,
        }

    def resume(self) -> None:
        """Continue from the group's checkpoint when it exists and holds these replicas."""
        if self.checkpoint_path is None or not self.checkpoint_path.exists():
            return
        ck = torch.load(self.checkpoint_path, map_location=self.device, weights_only=True)
        if [tuple(x) for x in ck["replicas"]] != [(r.fold.name, r.index, r.seed) for r in self.replicas]:
            return
        if "dropout_gens" not in ck:
            logger.info(f"{self.name}: the checkpoint is from a mertool that drew dropout per group; starting over")
            return
        self.params, self.buffers, self.opt, self.steps = ck["params"], ck["buffers"], ck["opt"], ck["steps"]
        for t, g, best, oracle in zip(self.solo, ck["gens"], ck["best"], ck["oracle"]):
            t.gen.set_state(g.cpu())
            t.best, t.oracle = EarlyStop(**best), OracleBest(**oracle)
        for gen, state in zip(self.drop_gens, ck["dropout_gens"]):
            gen.set_state(state.cpu())
        self.active, self.histories, self.first_epoch = ck["active"], ck["histories"], ck["epoch"]
        logger.info(f"resuming {self.name} from epoch {self.first_epoch + 1} "
                    f"({self.first_epoch} of {self.cfg.epochs} done)")

    @property
    def epochs_done(self) -> int:
        return max(len(h) for h in self.histories)

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
            self._load(r)
            t.history = self.histories[r]
            out.append(t.result(time.perf_counter() - seconds))
        return out

    def run(self) -> list[tuple[FoldResult, dict[str, torch.Tensor]]]:
        """Train every replica for the epoch budget (or until it stops early); one (result, final or
        best-validation weights) per replica, in order."""
        start = time.perf_counter()
        self.setup()
        self.resume()
        bar = progress_bar(total=self.cfg.epochs, initial=self.first_epoch, desc=self.name, unit="epoch",
                           leave=False, progress=self.progress)
        try:
            for epoch in range(self.first_epoch, self.cfg.epochs):
                if not self.active:
                    break
                self.train_epoch(epoch)
                self.evaluate(epoch)
                mean_loss = np.mean([h[-1]["train_loss"] for h in self.histories if h])
                bar.set_postfix(loss=f"{mean_loss:.3f}", refresh=False)
                bar.update()
                last = not self.active or epoch + 1 == self.cfg.epochs
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
