"""Seeds stacked within ``--seeds``: the replicas of every seed of a fold group train in one stack.

Each seed's results are compared with that seed trained alone (``train_run`` with the same
``--fold-batch``), which is the independent reference: with dropout on or off they must agree
to float tolerance, whatever else shares the stack (each replica draws from its own streams).
"""

from __future__ import annotations

import csv
import dataclasses
import logging

import numpy as np
import pytest

from mertool.train.config import TrainConfig
from mertool.train.run import train_run, train_seeds
from mertool.train.stacked import StackedTrainer
from train_fixtures import limit_stacked_replicas, synthetic_flow, write_flow_h5

SEEDS = [0, 3]


@pytest.fixture
def flow(tmp_path):
    per_subject = (5, 7, 6, 9)  # uneven folds: different batch counts and last-batch sizes per fold
    x, labels, subjects = synthetic_flow(n_subjects=len(per_subject), per_subject=max(per_subject), size=28)
    keep = np.concatenate([np.arange(i * max(per_subject), i * max(per_subject) + n) for i, n in enumerate(per_subject)])
    return write_flow_h5(tmp_path / "f28.h5", x[keep], [labels[i] for i in keep], [subjects[i] for i in keep])


def _cfg(dropout: float | None = 0.0, **kw) -> TrainConfig:
    extra = {"model_kwargs": {"dropout": dropout}} if dropout is not None else {}
    return TrainConfig(model="ststnet-fast", epochs=3, batch_size=8, optimizer="sgd", lr=0.01, momentum=0.9,
                       device="cpu", channels_last=False, **extra, **kw)


def _probs(run) -> np.ndarray:
    with open(run / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return np.array([[float(v) for k, v in r.items() if k.startswith("p_")] for r in rows])


@pytest.fixture
def stacks(monkeypatch):
    """The (fold, seed) replicas of every StackedTrainer that runs."""
    seen: list[list[tuple[str, int]]] = []
    real = StackedTrainer.run

    def spy(self):
        seen.append([(r.fold.name, r.seed) for r in self.replicas])
        return real(self)

    monkeypatch.setattr(StackedTrainer, "run", spy)
    return seen


def _alone(flow, tmp_path, cfg: TrainConfig) -> dict[int, np.ndarray]:
    """Each seed trained alone (its own run, same fold batch): the reference."""
    out = {}
    for s in SEEDS:
        run = train_run(flow, tmp_path / f"alone_{s}", dataclasses.replace(cfg, seed=s), progress=False)
        out[s] = _probs(run.path)
    return out


@pytest.mark.parametrize("dropout", [0.0, None])  # None: the recipe's dropout (0.5)
def test_seeds_share_a_stack_and_match_each_seed_alone(flow, tmp_path, stacks, caplog, dropout):
    cfg = _cfg(dropout=dropout, fold_batch=2)
    ref = _alone(flow, tmp_path, cfg)
    assert all(len({s for _, s in group}) == 1 for group in stacks)  # alone: one seed per stack
    stacks.clear()
    with caplog.at_level(logging.INFO, logger="mertool"):
        result = train_seeds(flow, tmp_path / "seeds", cfg, SEEDS, progress=False)
    assert "the 2 seeds' replicas of each fold group train in one stack" in caplog.text
    assert len(stacks) == 2 and all(len(g) == 4 and {s for _, s in g} == set(SEEDS) for g in stacks)  # 2 folds x 2 seeds
    for s in SEEDS:
        np.testing.assert_allclose(_probs(tmp_path / "seeds" / f"seed_{s}"), ref[s], atol=1e-4)
    assert not np.allclose(ref[SEEDS[0]], ref[SEEDS[1]], atol=1e-3)  # the seeds are different models
    assert result.metrics["seeds"] == SEEDS and not list((tmp_path / "seeds").rglob("*checkpoint*"))


def test_finished_folds_of_a_seed_are_not_retrained(flow, tmp_path, stacks):
    cfg = _cfg(fold_batch=4)
    root = tmp_path / "seeds"
    train_run(flow, root / f"seed_{SEEDS[1]}", dataclasses.replace(cfg, seed=SEEDS[1]), progress=False,
              folds=["s1", "s2"])
    stacks.clear()
    result = train_seeds(flow, root, cfg, SEEDS, progress=False)
    assert len(stacks) == 1 and len(stacks[0]) == 6  # 4 folds of seed 0 + the 2 of seed 3 left
    assert sorted(f for f, s in stacks[0] if s == SEEDS[1]) == ["s3", "s4"]
    assert [r.resumed for r in result.runs] == [0, 2] and not result.missing


def test_out_of_memory_halves_a_multi_seed_stack_over_replicas(flow, tmp_path, monkeypatch, caplog):
    cfg = _cfg(fold_batch=2)
    ref = _alone(flow, tmp_path, cfg)
    limit_stacked_replicas(monkeypatch, most=2)
    with caplog.at_level(logging.INFO, logger="mertool"):
        train_seeds(flow, tmp_path / "seeds", cfg, SEEDS, progress=False)
    assert "out of memory with 4 stacked replicas; retrying as 2 + 2" in caplog.text
    for s in SEEDS:
        np.testing.assert_allclose(_probs(tmp_path / "seeds" / f"seed_{s}"), ref[s], atol=1e-4)
