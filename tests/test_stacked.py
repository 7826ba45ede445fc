"""Stacked folds (mertool.train.stacked): equivalence with the sequential engine, reproducibility, refusals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mertool.models import get_entry
from mertool.train.config import TrainConfig, resolve_recipe
from mertool.train.fold import FoldTrainer
from mertool.train.loso import make_folds
from mertool.train.stacked import Replica, StackedTrainer, _optimizer_step, seed_summary, stack_refusal
from train_fixtures import ensure_tiny, synthetic_flow

ensure_tiny()
CPU = torch.device("cpu")
FLOW_MODELS = ("offtanet", "ststnet", "ststnet-fast", "offapexnet")


def _setup(model: str, per_subject=(5, 7, 6, 9), **cfg_kw):
    """Uneven subjects (so folds differ in training-set size and last-batch size) of the model's input size."""
    size = get_entry(model).input.arrays["flow"][-1]
    x, labels, subjects = synthetic_flow(n_subjects=len(per_subject), per_subject=max(per_subject), size=size)
    keep = np.concatenate([np.arange(i * max(per_subject), i * max(per_subject) + n) for i, n in enumerate(per_subject)])
    x, labels, subjects = x[keep], [labels[i] for i in keep], [subjects[i] for i in keep]
    classes = sorted(set(labels))
    y = np.array([classes.index(c) for c in labels])
    cfg = resolve_recipe(TrainConfig(model=model, channels_last=False, **cfg_kw))
    folds = make_folds(subjects, "loso", 5, [], 0.0, cfg.seed)
    return {"flow": torch.from_numpy(x)}, y, folds, cfg, len(classes)


@pytest.mark.parametrize("model", FLOW_MODELS)
def test_stacked_folds_equal_sequential_folds(model):
    """Without dropout and augmentation a stacked fold ends where the fold trained alone ends."""
    X, y, folds, cfg, k = _setup(model, epochs=3, batch_size=8, lr=1e-3, model_kwargs={"dropout": 0.0},
                                 lr_step=2, lr_gamma=0.5)
    assert stack_refusal(cfg, CPU, k) is None
    stacked = StackedTrainer(X, y, [Replica(f, i, cfg.seed) for i, f in enumerate(folds)], cfg, k, CPU).run()
    for i, fold in enumerate(folds):
        solo, solo_w = FoldTrainer(X, y, fold, i, cfg, k, CPU).run()
        res, w = stacked[i]
        assert res.name == fold.name and res.test_index == solo.test_index
        np.testing.assert_allclose(res.probs, solo.probs, atol=1e-4)
        assert w.keys() == solo_w.keys()
        for key in w:
            np.testing.assert_allclose(w[key].float().numpy(), solo_w[key].float().numpy(), atol=1e-4, err_msg=key)
        for a, b in zip(res.history, solo.history):
            assert a["lr"] == pytest.approx(b["lr"]) and a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-4)


@pytest.mark.parametrize("optimizer,extra", [("sgd", {"momentum": 0.9, "weight_decay": 1e-3}),
                                             ("adamw", {"weight_decay": 0.05}), ("adam", {"weight_decay": 0.01})])
def test_batched_optimizer_step_matches_torch_optim(optimizer, extra):
    """Two replicas at different step counts each move as torch.optim moves them alone."""
    cfg = resolve_recipe(TrainConfig(model="ststnet-fast", optimizer=optimizer, lr=0.01, **extra))
    gen = torch.Generator().manual_seed(0)
    p0 = torch.randn(2, 4, 3, generator=gen)
    grads = [torch.randn(2, 4, 3, generator=gen) for _ in range(3)]
    keys = ("buf",) if optimizer == "sgd" else ("m", "v")
    state, p, steps = {s: torch.zeros_like(p0) for s in keys}, p0.clone(), torch.zeros(2, dtype=torch.float64)
    for t, g in enumerate(grads):
        members = [0, 1] if t < 2 else [1]  # replica 0 has only 2 steps, replica 1 three
        idx = torch.tensor(members)
        steps[idx] += 1
        sub = {s: v[idx] for s, v in state.items()}
        p[idx] = _optimizer_step(cfg, p[idx], g[idx], sub, steps[idx], cfg.lr)
        for s in keys:
            state[s][idx] = sub[s]
    for r, n_steps in ((0, 2), (1, 3)):
        ref = torch.nn.Parameter(p0[r].clone())
        opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[optimizer](
            [ref], lr=cfg.lr, weight_decay=cfg.weight_decay, **({"momentum": cfg.momentum} if optimizer == "sgd" else {}))
        for g in grads[:n_steps]:
            ref.grad = g[r].clone()
            opt.step()
        torch.testing.assert_close(p[r], ref.detach(), atol=1e-6, rtol=1e-5)


def test_dropout_and_augment_reproducible_from_the_seed():
    X, y, folds, cfg, k = _setup("ststnet-fast", epochs=2, augment="flow_hflip")
    runs = [StackedTrainer(X, y, [Replica(f, i, s) for s in (0, 1) for i, f in enumerate(folds[:2])], cfg, k, CPU,
                           encoding="signed").run() for _ in range(2)]
    for (a, _), (b, _) in zip(*runs):
        assert a.probs == b.probs
    assert runs[0][0][0].probs != runs[0][2][0].probs  # same fold, other seed: another model


def test_refusals():
    base = resolve_recipe(TrainConfig(model="ststnet-fast"))
    assert stack_refusal(dataclasses.replace(base, early_stopping=True, val_fraction=0.2), CPU, 3) == \
        "early stopping, a validation split"
    assert "ORACLE" in stack_refusal(dataclasses.replace(base, oracle=True), CPU, 3)
    assert "accumulation" in stack_refusal(dataclasses.replace(base, accumulate=2), CPU, 3)
    assert "input stage 'pairs'" in stack_refusal(resolve_recipe(TrainConfig(model="facesleuth-small")), CPU, 3)


def test_seed_summary_mean_and_sd():
    s = seed_summary({0: {"uf1": 0.5, "uar": 0.4, "accuracy": 0.6}, 2: {"uf1": 0.7, "uar": 0.6, "accuracy": 0.6}})
    assert s["seeds"] == [0, 2] and s["uf1"] == pytest.approx(0.6) and s["uf1_per_seed"] == [0.5, 0.7]
    assert s["uf1_sd"] == pytest.approx(np.std([0.5, 0.7], ddof=1)) and s["accuracy_sd"] == 0.0
