"""Small modules shared by the model families."""

from __future__ import annotations

import torch
from torch import nn


class MatMul(nn.Module):
    """``a @ b`` as a module, so FLOP counters (:mod:`mertool.models.flops`) see attention products.

    Plain ``torch.matmul`` calls are invisible to forward hooks.
    """

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)
