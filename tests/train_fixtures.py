"""Helpers shared by the tests/test_train_*.py files (no tests here).

``tinyflow`` is a small model registered for engine tests: it trains in milliseconds, so
the engine's logic (splits, resume, selection) is testable without a real model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from mertool.stages.stagefile import StageWriter
from mertool.models._registry import _REGISTRY, InputSpec, register_model

TINY = "tinyflow"
TINY_SIZE = 16


class TinyFlowNet(nn.Module):
    def __init__(self, num_classes: int, aux: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()
        )
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(24, num_classes)
        self.aux = aux

    def forward(self, flow: torch.Tensor):
        logits = self.head(self.drop(self.body(flow)))
        if self.aux and self.training:
            return logits, 0.0 * logits.pow(2).mean()
        return logits


def ensure_tiny() -> str:
    if TINY not in _REGISTRY:
        register_model(
            TINY,
            InputSpec(stage="flow", arrays={"flow": (3, TINY_SIZE, TINY_SIZE)}),
            description="test model",
            defaults={"epochs": 8, "batch_size": 8, "lr": 0.01, "optimizer": "adam"},
        )(lambda num_classes, **kw: TinyFlowNet(num_classes, **kw))
    return TINY


def synthetic_flow(
    n_subjects: int = 4,
    per_subject: int = 6,
    classes: tuple[str, ...] = ("negative", "positive", "surprise"),
    size: int = TINY_SIZE,
    seed: int = 0,
    signal: float = 1.0,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Noise flows whose class shows as a bump in one channel (learnable, not trivial)."""
    rng = np.random.default_rng(seed)
    n = n_subjects * per_subject
    x = rng.normal(0, 1, (n, 3, size, size)).astype(np.float32)
    labels = [classes[i % len(classes)] for i in range(n)]
    for i, lab in enumerate(labels):
        c = classes.index(lab)
        x[i, c % 3, : size // 2, : size // 2] += signal * (1 + c // 3)
    subjects = [f"s{i // per_subject + 1}" for i in range(n)]
    return x, labels, subjects


def write_flow_h5(
    path: Path,
    x: np.ndarray,
    labels: list[str] | None,
    subjects: list[str] | None,
    extra_meta: dict | None = None,
) -> Path:
    """A stacked ``flow`` stage file, as ``mertool flow`` writes it."""
    w = StageWriter(path, "flow", {"synthetic": True, "n": len(x), "checksum": float(np.abs(x).sum())})
    ids = []
    for i in range(len(x)):
        sid = f"c{i:03d}"
        meta = {}
        if labels is not None:
            meta["label"] = labels[i]
        if subjects is not None:
            meta["subject"] = subjects[i]
        for k, v in (extra_meta or {}).items():
            meta[k] = v[i]
        w.add(sid, {"flow": x[i]}, meta)
        ids.append(sid)
    return w.finish(ids, stacked=True)


def limit_stacked_replicas(monkeypatch, most: int) -> None:
    """Make a stack of more than ``most`` replicas run out of (simulated) memory."""
    from mertool.train.stacked import StackedTrainer

    real = StackedTrainer.run

    def small_memory(self):
        if len(self.replicas) > most:
            raise torch.OutOfMemoryError("simulated")
        return real(self)

    monkeypatch.setattr(StackedTrainer, "run", small_memory)
